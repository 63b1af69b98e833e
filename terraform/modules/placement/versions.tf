terraform {
  # No provider: this module only reads a placer plan file.
  required_version = ">= 1.9.0"
}
