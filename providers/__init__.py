"""Providers: the only code that talks to infrastructure (Kubernetes, AWS, GCP, NVML, a GitOps tree).

Import the one you need (``providers.aws``...): cloud SDKs load only when a command uses them.
"""

from providers.base import Provider, ProviderError

__all__ = ["Provider", "ProviderError"]
