output "instance_group_managers" {
  description = "Managed instance group self link per gcp pool (zonal and regional)."
  value = merge(
    { for name, g in google_compute_instance_group_manager.pool : name => g.self_link },
    { for name, g in google_compute_region_instance_group_manager.pool : name => g.self_link },
  )
}

output "target_sizes" {
  description = "target_size (nodes) per gcp pool, as applied."
  value = merge(
    { for name, g in google_compute_instance_group_manager.pool : name => g.target_size },
    { for name, g in google_compute_region_instance_group_manager.pool : name => g.target_size },
  )
}

output "instance_template_ids" {
  description = "Instance template id per gcp pool."
  value       = { for name, t in google_compute_instance_template.pool : name => t.id }
}
