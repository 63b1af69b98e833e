output "format_version" {
  description = "formatVersion of the plan file (always 1 when the plan was accepted)."
  value       = local.format_version

  precondition {
    condition     = local.format_version == local.supported_format_version
    error_message = "Unsupported placer plan formatVersion ${jsonencode(local.format_version)} in ${var.plan_file}; this module reads formatVersion ${local.supported_format_version}."
  }
}

output "pool_nodes" {
  description = "Nodes per pool, as planned (every pool of the plan)."
  value       = local.pool_nodes

  precondition {
    condition     = local.format_version == local.supported_format_version
    error_message = "Unsupported placer plan formatVersion ${jsonencode(local.format_version)} in ${var.plan_file}; this module reads formatVersion ${local.supported_format_version}."
  }

  precondition {
    condition     = length(local.duplicate_pools) == 0
    error_message = "The plan lists these pools more than once: ${join(", ", local.duplicate_pools)}."
  }
}

output "pool_gpus" {
  description = "GPUs used and capacity per pool, as planned."
  value       = local.pool_gpus
}

output "pool_nodes_by_provider" {
  description = "Nodes per pool grouped by provider (from pool_providers): provider -> pool -> nodes."
  value       = local.pool_nodes_by_provider
}

output "aws_pool_nodes" {
  description = "Nodes per pool whose pool_providers entry is aws."
  value       = lookup(local.pool_nodes_by_provider, "aws", {})
}

output "gcp_pool_nodes" {
  description = "Nodes per pool whose pool_providers entry is gcp."
  value       = lookup(local.pool_nodes_by_provider, "gcp", {})
}

output "unmapped_pools" {
  description = "Pools of the plan that pool_providers does not name (sorted)."
  value       = sort([for pool in keys(local.pool_nodes) : pool if !contains(keys(var.pool_providers), pool)])
}

output "fleet_digest" {
  description = "fleetDigest of the plan (matches placer_plan.fleet_digest in the tfvars)."
  value       = try(local.plan.fleetDigest, null)
}

output "prior_state_serial" {
  description = "priorState.serial of the plan."
  value       = try(local.plan.priorState.serial, null)
}

output "solver_status" {
  description = "solver.status of the plan (OPTIMAL, FEASIBLE, ...)."
  value       = try(local.plan.solver.status, null)
}
