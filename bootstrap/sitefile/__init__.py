"""The parts of loading a site file, behind ``bootstrap.siteload``.

Why a package: reading a site file is three jobs that change for different reasons,
each in a module of its own:

* ``yamlnodes``: YAML text -> plain data, with the line/column of every value and key
  (refusing duplicate keys, recursive aliases and alias bombs)
* ``explain``: a pydantic error -> a ``Problem`` at the YAML location it is about,
  in operator language and without echoing values
* ``schema``: the JSON Schema of a site file (for editors and ``drboot schema``)

``problems`` holds what they share: ``Problem``, ``SiteFileError`` and how a data path
is shown. Callers import from ``bootstrap.siteload``.
"""
