# GPU capacity on AWS sized by placer: one launch template + Auto Scaling group per
# ASG pool, one EKS managed node group per EKS pool. placer owns the node counts
# (nodes/min_nodes/max_nodes from placer.auto.tfvars.json); pool_settings owns what a
# node is. Nothing here ignores changes to sizes: a terraform apply converges the
# groups to the counts placer last planned.

data "aws_region" "current" {}

locals {
  aws_pools = {
    for name, p in var.placer_pools : name => p
    if p.provider == "aws" && (var.region == null || try(p.aws.region, null) == var.region)
  }
  asg_pools = { for name, p in local.aws_pools : name => p if try(p.aws.auto_scaling_group_name, null) != null }
  eks_pools = { for name, p in local.aws_pools : name => p if try(p.aws.eks_cluster, null) != null }

  plan_tags = var.placer_plan == null ? {} : {
    "placer:fleet-digest" = var.placer_plan.fleet_digest
    "placer:plan-serial"  = tostring(var.placer_plan.serial)
  }

  # Tags every resource of a pool carries (plan tags are added only to the groups, so
  # that a new plan does not roll a new launch template version).
  pool_tags = {
    for name, p in local.aws_pools : name => merge(var.tags, var.pool_settings[name].tags, {
      "placer:pool"          = name
      "placer:gpu-type"      = p.gpu_type
      "placer:gpus-per-node" = tostring(p.gpus_per_node)
      "placer:spot"          = tostring(p.spot)
      "managed-by"           = "placer-terraform"
    })
  }
}

resource "aws_launch_template" "pool" {
  for_each = local.asg_pools

  # <name_prefix><pool>-<a unique suffix>, the name it is made with and keeps (ignore_changes below)
  name_prefix            = "${var.name_prefix}${each.key}-"
  description            = "placer pool ${each.key}: ${each.value.gpus_per_node}x ${each.value.gpu_type}"
  image_id               = var.pool_settings[each.key].ami_id
  instance_type          = var.pool_settings[each.key].instance_type
  key_name               = var.pool_settings[each.key].key_name
  vpc_security_group_ids = length(var.pool_settings[each.key].security_group_ids) > 0 ? var.pool_settings[each.key].security_group_ids : null
  user_data              = var.pool_settings[each.key].user_data == null ? null : base64encode(var.pool_settings[each.key].user_data)
  update_default_version = true

  dynamic "iam_instance_profile" {
    for_each = var.pool_settings[each.key].iam_instance_profile == null ? [] : [var.pool_settings[each.key].iam_instance_profile]
    content {
      name = iam_instance_profile.value
    }
  }

  dynamic "block_device_mappings" {
    for_each = var.pool_settings[each.key].root_volume_size_gb == null ? [] : [var.pool_settings[each.key].root_volume_size_gb]
    content {
      device_name = "/dev/xvda"
      ebs {
        volume_size           = block_device_mappings.value
        volume_type           = "gp3"
        delete_on_termination = true
      }
    }
  }

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.pool_tags[each.key]
  }

  tags = local.pool_tags[each.key]

  lifecycle {
    # AWS cannot rename a launch template, so the aws provider replaces one whose name or name_prefix
    # changes. A pool renamed in the fleet keeps its group (placer moves its resources in the state:
    # placer_moved.tf), and its template too: the name stays the one it was made with, the pool's new
    # name is in its tags and description (a new version, in place). Before, the rename destroyed
    # the template and made another (a new id under the group). The suffix keeps a released name
    # free for a new pool, and a template made with `name` (before name_prefix) keeps that name.
    ignore_changes = [name, name_prefix]

    precondition {
      condition     = each.value.aws.region == data.aws_region.current.name
      error_message = "Pool ${each.key} is in ${each.value.aws.region} but this aws provider configuration is for ${data.aws_region.current.name}; use one module instance per region (variable region) with a matching provider."
    }
  }
}

resource "aws_autoscaling_group" "pool" {
  for_each = local.asg_pools

  name                      = each.value.aws.auto_scaling_group_name
  desired_capacity          = each.value.nodes
  min_size                  = each.value.min_nodes
  max_size                  = each.value.max_nodes
  vpc_zone_identifier       = var.pool_settings[each.key].subnet_ids
  wait_for_capacity_timeout = var.wait_for_capacity_timeout
  capacity_rebalance        = each.value.spot

  # On-demand pools: the launch template as is.
  dynamic "launch_template" {
    for_each = each.value.spot ? [] : [aws_launch_template.pool[each.key]]
    content {
      id      = launch_template.value.id
      version = launch_template.value.latest_version
    }
  }

  # Spot pools: all capacity from Spot, across the listed instance types.
  dynamic "mixed_instances_policy" {
    for_each = each.value.spot ? [aws_launch_template.pool[each.key]] : []
    content {
      instances_distribution {
        on_demand_base_capacity                  = 0
        on_demand_percentage_above_base_capacity = 0
        spot_allocation_strategy                 = var.spot_allocation_strategy
      }
      launch_template {
        launch_template_specification {
          launch_template_id = mixed_instances_policy.value.id
          version            = mixed_instances_policy.value.latest_version
        }
        dynamic "override" {
          for_each = distinct(concat([var.pool_settings[each.key].instance_type], var.pool_settings[each.key].extra_instance_types))
          content {
            instance_type = override.value
          }
        }
      }
    }
  }

  dynamic "tag" {
    for_each = merge(local.pool_tags[each.key], { Name = "placer-${each.key}" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  dynamic "tag" {
    for_each = local.plan_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }

  lifecycle {
    # a renamed group (placer sizes the new one and releases the old) is made before the old one
    # goes, as placer's plan orders it: destroy-first took the old group's GPU nodes first
    create_before_destroy = true

    precondition {
      condition     = each.value.aws.region == data.aws_region.current.name
      error_message = "Pool ${each.key} is in ${each.value.aws.region} but this aws provider configuration is for ${data.aws_region.current.name}."
    }
  }
}

resource "aws_eks_node_group" "pool" {
  for_each = local.eks_pools

  cluster_name    = each.value.aws.eks_cluster
  node_group_name = each.value.aws.eks_nodegroup
  node_role_arn   = var.pool_settings[each.key].node_role_arn
  subnet_ids      = var.pool_settings[each.key].subnet_ids
  instance_types  = distinct(concat([var.pool_settings[each.key].instance_type], each.value.spot ? var.pool_settings[each.key].extra_instance_types : []))
  ami_type        = var.pool_settings[each.key].eks_ami_type
  capacity_type   = each.value.spot ? "SPOT" : "ON_DEMAND"

  scaling_config {
    desired_size = each.value.nodes
    min_size     = each.value.min_nodes
    # EKS takes no maximum below 1: a pool placer drained (nodes.count 0, max_nodes 0) keeps its
    # 0 nodes under a maximum of 1 (a max_size of 0 failed terraform plan)
    max_size = max(each.value.max_nodes, 1)
  }

  labels = merge(var.pool_settings[each.key].labels, {
    "placer.dev/pool"     = each.key
    "placer.dev/gpu-type" = each.value.gpu_type
  })

  tags = merge(local.pool_tags[each.key], local.plan_tags)

  lifecycle {
    # a replaced node group (placer's plan names the new one: another nodegroup, or, where only its
    # capacity type changes, the alternate name placer derives, <nodegroup>-alt) is made before the
    # old one goes, as placer's plan orders it: destroy-first took the old group's GPU nodes before
    # the new group had any. EKS refuses two node groups of one name, so a replacement that keeps
    # the name (an instance type or subnet changed in pool_settings) fails before anything is deleted
    create_before_destroy = true

    # remote_access is not managed here and forces replacement: never let drift in it
    # destroy a GPU node group. Sizes are deliberately not ignored.
    ignore_changes = [remote_access]

    precondition {
      condition     = each.value.aws.region == data.aws_region.current.name
      error_message = "Pool ${each.key} is in ${each.value.aws.region} but this aws provider configuration is for ${data.aws_region.current.name}."
    }
  }
}
