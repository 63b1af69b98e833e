"""Policy rules: the behaviour of every rule of the fleet format, registered by name."""

from policies.registry import build_rules, rule_names

__all__ = ["build_rules", "rule_names"]
