"""Adapters: the only modules that import vendor libraries (paramiko, kubernetes, ansible_runner, git, pyrage, Crypto)."""
