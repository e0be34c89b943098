"""Local HTTP doubles of cloud APIs (loopback only), built from the providers' API references."""
