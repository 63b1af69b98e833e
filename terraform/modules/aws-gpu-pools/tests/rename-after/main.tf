# Fixture of pools.tftest.hcl (runs made/renamed): the root of rename-before after pool aws-h100 is renamed
# gpu-h100, with the moved blocks placer writes (placer_moved.tf) for an Auto Scaling group pool.

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

moved {
  from = module.pools.aws_launch_template.pool["aws-h100"]
  to   = module.pools.aws_launch_template.pool["gpu-h100"]
}

moved {
  from = module.pools.aws_autoscaling_group.pool["aws-h100"]
  to   = module.pools.aws_autoscaling_group.pool["gpu-h100"]
}
