"""What every cloud provider (Hetzner Cloud, OpenStack) shares, and nothing vendor-specific.

* ``labels``: the drboot labels every server carries (``drboot.dev/site``, ``drboot.dev/role``,
  ``drboot.dev/run``), who owns a server, and server names with the run id of a drill;
* ``retry``: one capped, polite retry loop for API calls that honours rate-limit headers
  (``RateLimit-Reset``, ``Retry-After``) and retries 5xx / locked / conflict answers;
* ``userdata``: the cloud-init user data that hands a server the SSH host key drboot made
  (so the key is pinned before the first connection) and the operator's public key;
* ``hostkeys``: where the pinned public host keys are kept between processes.

Vendor libraries are imported only by the provider modules (``bootstrap.providers.hcloud``,
``bootstrap.providers.openstack``); these modules import none.
"""
