"""The application-service registration file: build it from the config, write it, read it."""

from registration.build import build_registration, generate_tokens, write_registration

__all__ = ["build_registration", "generate_tokens", "write_registration"]
