"""The value types a site file is made of, apart from the sections that use them.

Why a package of its own: ``bootstrap.settings`` says *what* a site holds (providers,
k3s, escrow, the repository...); these modules say what one value may look like (a
duration, a DNS label, a path next to the site file, a reference to a secret) and how
a cross-field check reports where it failed. They change for different reasons and are
reused by every section, so each lives in a small module here:

* ``model``: the ``SiteModel`` base and ``CrossFieldError`` (with its ``Loc``)
* ``durations``: ``Duration`` and its short form (``1h30m``)
* ``shaped``: strings with a shape (``SiteName``, ``Address``, ``Fingerprint``, ...)
* ``paths``: ``SitePath``, anchored at the site file's directory
* ``secretrefs``: ``SecretRef``/``EscrowRef`` and the fields that refuse inline secrets
"""
