# Reads a placer plan file and exposes the node count placer chose for every pool,
# so that a root module can size the provider modules from a reviewed plan instead
# of from tfvars. Terraform never re-solves: it only reads what the plan recorded.

locals {
  plan = jsondecode(file(var.plan_file))

  # The format this module understands (SPEC.md section 3: apply refuses a plan whose
  # formatVersion it does not know; so does this module).
  supported_format_version = 1
  format_version           = try(local.plan.formatVersion, null)

  pools = try(local.plan.pools, [])

  # Grouped first so that a pool listed twice is reported by a precondition instead
  # of a "Duplicate object key" error.
  pool_entries    = { for p in local.pools : p.pool => p... }
  duplicate_pools = sort([for pool, entries in local.pool_entries : pool if length(entries) > 1])
  pool_nodes      = { for pool, entries in local.pool_entries : pool => entries[0].nodes }
  pool_gpus = {
    for pool, entries in local.pool_entries : pool => {
      used     = try(entries[0].gpusUsed, null)
      capacity = try(entries[0].gpusCapacity, null)
    }
  }

  providers = toset(values(var.pool_providers))

  pool_nodes_by_provider = {
    for provider in local.providers : provider => {
      for pool, nodes in local.pool_nodes : pool => nodes
      if lookup(var.pool_providers, pool, null) == provider
    }
  }
}

check "pool_providers_name_plan_pools" {
  assert {
    condition     = alltrue([for pool in keys(var.pool_providers) : contains(keys(local.pool_nodes), pool)])
    error_message = "pool_providers names pools the plan does not list: ${join(", ", [for pool in keys(var.pool_providers) : pool if !contains(keys(local.pool_nodes), pool)])}."
  }
}
