"""The application-service side: the HTTP endpoint the homeserver calls, and event intake."""
