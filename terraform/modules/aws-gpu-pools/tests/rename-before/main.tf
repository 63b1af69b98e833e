# Fixture of pools.tftest.hcl (runs made/renamed): a root that calls aws-gpu-pools, before pool
# aws-h100 is renamed gpu-h100.

variable "placer_pools" {
  type = any
}

variable "pool_settings" {
  type = any
}

module "pools" {
  source        = "../.."
  placer_pools  = var.placer_pools
  pool_settings = var.pool_settings
}

output "launch_template_names" {
  value = module.pools.launch_template_names
}

output "asg_names" {
  value = module.pools.asg_names
}
