terraform {
  # Cross-variable validation (pool_settings checks placer_pools) needs 1.9.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Tested against 5.100.0 (the offline mirror). 6.x changes data.aws_region
      # and adds per-resource regions; revisit before widening.
      version = ">= 5.0, < 6.0"
    }
  }
}
