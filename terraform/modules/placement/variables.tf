variable "plan_file" {
  description = "Path of a placer plan file (JSON, SPEC.md section 3), e.g. written by `placer plan -o plan.json`."
  type        = string

  validation {
    condition     = fileexists(var.plan_file)
    error_message = "plan_file does not name an existing file."
  }

  validation {
    condition     = can(jsondecode(file(var.plan_file)).pools)
    error_message = "plan_file is not a placer plan: it must be JSON with a top-level \"pools\" list."
  }
}

variable "pool_providers" {
  description = <<-EOT
    Provider of each pool (pool name -> kubernetes | aws | gcp | static); with it the
    module also outputs the nodes per provider. Pools of the plan not named here are
    reported by output unmapped_pools.
  EOT
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for pool, provider in var.pool_providers : contains(["kubernetes", "aws", "gcp", "static"], provider)])
    error_message = "pool_providers values must be one of kubernetes, aws, gcp, static."
  }
}
