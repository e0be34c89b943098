"""Scheduled drills: a systemd timer and service that run ``drboot drill`` (see ``units``)."""
