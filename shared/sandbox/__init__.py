"""Sandbox providers: stand-ins for Twilio (and SMTP) that speak the real protocols on loopback."""
