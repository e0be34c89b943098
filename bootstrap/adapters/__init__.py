"""Adapters: the only modules that import vendor libraries.

paramiko (ssh), kubernetes (kube), ansible_runner (ansible), GitPython (git),
pyrage (age), pycryptodome (shamir). Each translates its library's errors into
``TransientError`` / ``PermanentError`` at this boundary.
"""
