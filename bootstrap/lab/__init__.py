"""The lab: disposable Debian hosts (systemd-nspawn) on one Linux box, for drills and tests."""
