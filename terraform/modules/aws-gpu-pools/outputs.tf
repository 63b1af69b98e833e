output "asg_names" {
  description = "Auto Scaling group name per ASG pool."
  value       = { for name, g in aws_autoscaling_group.pool : name => g.name }
}

output "asg_desired_capacities" {
  description = "Desired capacity (nodes) per ASG pool, as applied."
  value       = { for name, g in aws_autoscaling_group.pool : name => g.desired_capacity }
}

output "launch_template_ids" {
  description = "Launch template id per ASG pool."
  value       = { for name, lt in aws_launch_template.pool : name => lt.id }
}

output "launch_template_names" {
  description = "Launch template name per ASG pool: <name_prefix><pool>-<suffix> as made; a renamed pool keeps its template's name."
  value       = { for name, lt in aws_launch_template.pool : name => lt.name }
}

output "eks_node_groups" {
  description = "EKS node group (cluster:nodegroup) per EKS pool."
  value       = { for name, ng in aws_eks_node_group.pool : name => "${ng.cluster_name}:${ng.node_group_name}" }
}

output "eks_desired_sizes" {
  description = "Desired size (nodes) per EKS pool, as applied."
  value       = { for name, ng in aws_eks_node_group.pool : name => ng.scaling_config[0].desired_size }
}

output "pool_nodes" {
  description = "Nodes per aws pool managed by this module (ASG and EKS together)."
  value = merge(
    { for name, g in aws_autoscaling_group.pool : name => g.desired_capacity },
    { for name, ng in aws_eks_node_group.pool : name => ng.scaling_config[0].desired_size },
  )
}
