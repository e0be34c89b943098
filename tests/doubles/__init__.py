"""Local HTTP DOUBLES of cloud APIs (loopback only), for tests. Not the real services.

* ``hcloud_double.HcloudDouble``: the Hetzner Cloud API v1, built from Hetzner's published
  API reference; the official ``hcloud`` library talks to it unchanged.
* ``openstack.OpenStackDouble``: Keystone v3, Nova, Glance and Neutron, built from the
  OpenStack API references; ``openstacksdk`` talks to it unchanged.
* ``servers``: where a double's servers come from: ``PaperServers`` (records only, for fast
  unit tests) or ``LabServers`` (each server is a REAL lab host booted with cloud-init's
  NoCloud seed holding the user data drboot sent).
"""
