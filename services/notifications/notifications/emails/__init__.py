"""Outbound email: templates, the queue of emails to send, SMTP delivery, the email log API."""
