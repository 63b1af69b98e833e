# Offline tests of aws-gpu-pools: a mocked aws provider, so nothing leaves the machine.
# The pools mirror terraform/examples/placer.auto.tfvars.json (placer's tfvars contract).

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }
  mock_resource "aws_launch_template" {
    defaults = {
      id             = "lt-0123456789abcdef0"
      latest_version = 1
    }
  }
}

variables {
  placer_pools = {
    "aws-eu-h100" = {
      provider      = "aws"
      nodes         = 2
      min_nodes     = 0
      max_nodes     = 8
      gpu_type      = "H100-80GB"
      gpus_per_node = 8
      spot          = false
      aws = {
        region                  = "eu-west-1"
        auto_scaling_group_name = "placer-aws-eu-h100"
        eks_cluster             = null
        eks_nodegroup           = null
      }
      gcp = null
    }
    "gcp-eu-a100" = {
      provider      = "gcp"
      nodes         = 1
      min_nodes     = 0
      max_nodes     = 4
      gpu_type      = "A100-80GB"
      gpus_per_node = 8
      spot          = true
      aws           = null
      gcp = {
        project                = "acme-ml"
        zone                   = "europe-west4-a"
        region                 = null
        instance_group_manager = "placer-gcp-eu-a100"
      }
    }
  }
  pool_settings = {
    "aws-eu-h100" = {
      instance_type = "p5.48xlarge"
      ami_id        = "ami-0123456789abcdef0"
      subnet_ids    = ["subnet-aaaa1111", "subnet-bbbb2222"]
      tags          = { team = "ml-platform" }
    }
  }
  placer_plan = {
    fleet_digest = "sha256:3f1c9a7e"
    serial       = 3
  }
}

run "asg_follows_placer_nodes" {
  command = plan

  assert {
    condition     = length(aws_autoscaling_group.pool) == 1 && length(aws_eks_node_group.pool) == 0
    error_message = "Exactly the one aws ASG pool is managed; the gcp pool is ignored."
  }
  assert {
    condition     = aws_autoscaling_group.pool["aws-eu-h100"].name == "placer-aws-eu-h100"
    error_message = "ASG name comes from aws.auto_scaling_group_name."
  }
  assert {
    condition     = aws_autoscaling_group.pool["aws-eu-h100"].desired_capacity == var.placer_pools["aws-eu-h100"].nodes
    error_message = "desired_capacity must equal placer's nodes."
  }
  assert {
    condition     = aws_autoscaling_group.pool["aws-eu-h100"].min_size == 0 && aws_autoscaling_group.pool["aws-eu-h100"].max_size == 8
    error_message = "min_size/max_size come from min_nodes/max_nodes."
  }
  assert {
    condition     = toset(aws_autoscaling_group.pool["aws-eu-h100"].vpc_zone_identifier) == toset(["subnet-aaaa1111", "subnet-bbbb2222"])
    error_message = "Subnets come from pool_settings."
  }
  assert {
    condition     = length(aws_autoscaling_group.pool["aws-eu-h100"].mixed_instances_policy) == 0 && length(aws_autoscaling_group.pool["aws-eu-h100"].launch_template) == 1
    error_message = "On-demand pools use the launch template directly, without a mixed instances policy."
  }
  assert {
    condition     = aws_launch_template.pool["aws-eu-h100"].instance_type == "p5.48xlarge" && aws_launch_template.pool["aws-eu-h100"].image_id == "ami-0123456789abcdef0"
    error_message = "Launch template takes instance_type and ami_id from pool_settings."
  }
  assert {
    condition     = aws_launch_template.pool["aws-eu-h100"].name_prefix == "placer-aws-eu-h100-"
    error_message = "The launch template is made as <name_prefix><pool>-<unique suffix>."
  }
  assert {
    condition     = aws_launch_template.pool["aws-eu-h100"].tags["placer:gpu-type"] == "H100-80GB" && aws_launch_template.pool["aws-eu-h100"].tags["team"] == "ml-platform"
    error_message = "Launch template carries the pool tags and pool_settings tags."
  }
  assert {
    condition     = length([for t in aws_autoscaling_group.pool["aws-eu-h100"].tag : t if t.key == "placer:plan-serial" && t.value == "3" && !t.propagate_at_launch]) == 1
    error_message = "The ASG records placer_plan.serial as a non-propagated tag."
  }
  assert {
    condition     = output.asg_desired_capacities == { "aws-eu-h100" = 2 }
    error_message = "Output asg_desired_capacities maps pool to nodes."
  }
  assert {
    condition     = output.asg_names == { "aws-eu-h100" = "placer-aws-eu-h100" }
    error_message = "Output asg_names maps pool to ASG name."
  }
}

run "spot_pool_uses_mixed_instances_policy" {
  command = plan

  variables {
    placer_pools = {
      "aws-us-l4-spot" = {
        provider      = "aws"
        nodes         = 3
        min_nodes     = 1
        max_nodes     = 10
        gpu_type      = "L4-24GB"
        gpus_per_node = 4
        spot          = true
        aws           = { region = "eu-west-1", auto_scaling_group_name = "placer-l4-spot" }
      }
    }
    pool_settings = {
      "aws-us-l4-spot" = {
        instance_type        = "g6.12xlarge"
        extra_instance_types = ["g6.24xlarge"]
        ami_id               = "ami-0123456789abcdef0"
        subnet_ids           = ["subnet-aaaa1111"]
      }
    }
  }

  assert {
    condition     = aws_autoscaling_group.pool["aws-us-l4-spot"].desired_capacity == 3
    error_message = "desired_capacity must equal placer's nodes."
  }
  assert {
    condition     = length(aws_autoscaling_group.pool["aws-us-l4-spot"].launch_template) == 0 && length(aws_autoscaling_group.pool["aws-us-l4-spot"].mixed_instances_policy) == 1
    error_message = "Spot pools use a mixed instances policy instead of a plain launch template."
  }
  assert {
    condition     = aws_autoscaling_group.pool["aws-us-l4-spot"].mixed_instances_policy[0].instances_distribution[0].on_demand_percentage_above_base_capacity == 0
    error_message = "Spot pools take no on-demand capacity above base."
  }
  assert {
    condition     = aws_autoscaling_group.pool["aws-us-l4-spot"].mixed_instances_policy[0].instances_distribution[0].spot_allocation_strategy == "price-capacity-optimized"
    error_message = "Spot pools use the configured spot allocation strategy."
  }
  assert {
    condition     = [for o in aws_autoscaling_group.pool["aws-us-l4-spot"].mixed_instances_policy[0].launch_template[0].override : o.instance_type] == ["g6.12xlarge", "g6.24xlarge"]
    error_message = "Spot overrides list instance_type then extra_instance_types."
  }
}

run "eks_pool_scaling_config" {
  command = plan

  variables {
    placer_pools = {
      "aws-eks-a10g" = {
        provider      = "aws"
        nodes         = 4
        min_nodes     = 2
        max_nodes     = 6
        gpu_type      = "A10G-24GB"
        gpus_per_node = 1
        spot          = true
        aws           = { region = "eu-west-1", eks_cluster = "ml", eks_nodegroup = "a10g", auto_scaling_group_name = null }
      }
    }
    pool_settings = {
      "aws-eks-a10g" = {
        instance_type = "g5.xlarge"
        subnet_ids    = ["subnet-aaaa1111"]
        node_role_arn = "arn:aws:iam::123456789012:role/eks-nodes"
      }
    }
  }

  assert {
    condition     = length(aws_autoscaling_group.pool) == 0 && length(aws_eks_node_group.pool) == 1
    error_message = "An EKS pool becomes a node group, not an ASG."
  }
  assert {
    condition = (
      aws_eks_node_group.pool["aws-eks-a10g"].scaling_config[0].desired_size == 4 &&
      aws_eks_node_group.pool["aws-eks-a10g"].scaling_config[0].min_size == 2 &&
      aws_eks_node_group.pool["aws-eks-a10g"].scaling_config[0].max_size == 6
    )
    error_message = "scaling_config follows nodes/min_nodes/max_nodes."
  }
  assert {
    condition     = aws_eks_node_group.pool["aws-eks-a10g"].capacity_type == "SPOT" && aws_eks_node_group.pool["aws-eks-a10g"].cluster_name == "ml"
    error_message = "Spot EKS pools use capacity_type SPOT in the named cluster."
  }
  assert {
    condition     = aws_eks_node_group.pool["aws-eks-a10g"].ami_type == "AL2023_x86_64_NVIDIA" && aws_eks_node_group.pool["aws-eks-a10g"].instance_types == tolist(["g5.xlarge"])
    error_message = "EKS pools default to the NVIDIA AL2023 AMI type and take instance_type from pool_settings."
  }
  assert {
    condition     = aws_eks_node_group.pool["aws-eks-a10g"].labels["placer.dev/pool"] == "aws-eks-a10g"
    error_message = "Nodes carry the placer.dev/pool label."
  }
}

# A spot change replaces an EKS pool's node group under <nodegroup>-alt (placer's plan names it): its
# nodes carry the placer.dev/pool label as the original's do, and a user label of that key does not
# win, so a nodeSelector on placer.dev/pool follows the replacement (eks.amazonaws.com/nodegroup does not).
run "eks_replacement_nodegroup_keeps_the_pool_label" {
  command = plan

  variables {
    placer_pools = {
      "aws-eks-a10g" = {
        provider      = "aws"
        nodes         = 1
        min_nodes     = 0
        max_nodes     = 2
        gpu_type      = "A10G-24GB"
        gpus_per_node = 1
        spot          = true
        aws           = { region = "eu-west-1", eks_cluster = "ml", eks_nodegroup = "a10g-alt", auto_scaling_group_name = null }
      }
    }
    pool_settings = {
      "aws-eks-a10g" = {
        instance_type = "g5.xlarge"
        subnet_ids    = ["subnet-aaaa1111"]
        node_role_arn = "arn:aws:iam::123456789012:role/eks-nodes"
        labels        = { "placer.dev/pool" = "something-else", team = "ml" }
      }
    }
  }

  assert {
    condition     = aws_eks_node_group.pool["aws-eks-a10g"].node_group_name == "a10g-alt"
    error_message = "The replacement node group takes the name placer's plan gives it."
  }
  assert {
    condition     = aws_eks_node_group.pool["aws-eks-a10g"].labels["placer.dev/pool"] == "aws-eks-a10g" && aws_eks_node_group.pool["aws-eks-a10g"].labels["team"] == "ml"
    error_message = "The replacement's nodes carry placer.dev/pool = the pool's name (over a user label of that key) and the user's other labels."
  }
}

run "apply_with_mocks_reports_sizes" {
  command = apply

  assert {
    condition     = output.pool_nodes == { "aws-eu-h100" = 2 }
    error_message = "pool_nodes reports the applied sizes."
  }
  assert {
    condition     = output.launch_template_ids["aws-eu-h100"] == "lt-0123456789abcdef0"
    error_message = "launch_template_ids reports the template ids."
  }
}

# A pool renamed in the fleet (aws-h100 -> gpu-h100, its Auto Scaling group h100 kept): placer's
# moved blocks move its resources, and its launch template keeps its name. AWS cannot rename a
# template, so the aws provider replaces one whose name changes (a new template, a new id under the
# group); the name was "<name_prefix><pool>", so a rename replaced it. The two runs share one state
# (state_key, Terraform 1.11); the second root is the first with the moved blocks.
run "made" {
  state_key = "rename"
  providers = {
    aws = aws
  }
  module {
    source = "./tests/rename-before"
  }

  variables {
    placer_pools = {
      "aws-h100" = {
        provider      = "aws"
        nodes         = 2
        min_nodes     = 0
        max_nodes     = 4
        gpu_type      = "H100-80GB"
        gpus_per_node = 8
        aws           = { region = "eu-west-1", auto_scaling_group_name = "h100" }
      }
    }
    pool_settings = {
      "aws-h100" = { instance_type = "p5.48xlarge", ami_id = "ami-0123456789abcdef0", subnet_ids = ["subnet-aaaa1111"] }
    }
  }

  assert {
    condition     = output.asg_names == { "aws-h100" = "h100" }
    error_message = "The pool's Auto Scaling group is made."
  }
}

run "renamed" {
  state_key = "rename"
  providers = {
    aws = aws
  }
  module {
    source = "./tests/rename-after"
  }

  variables {
    placer_pools = {
      "gpu-h100" = {
        provider      = "aws"
        nodes         = 2
        min_nodes     = 0
        max_nodes     = 4
        gpu_type      = "H100-80GB"
        gpus_per_node = 8
        aws           = { region = "eu-west-1", auto_scaling_group_name = "h100" }
      }
    }
    pool_settings = {
      "gpu-h100" = { instance_type = "p5.48xlarge", ami_id = "ami-0123456789abcdef0", subnet_ids = ["subnet-aaaa1111"] }
    }
  }

  assert {
    condition     = output.asg_names == { "gpu-h100" = "h100" }
    error_message = "The renamed pool sizes its group under its new name."
  }
  assert {
    condition     = output.launch_template_names == { "gpu-h100" = run.made.launch_template_names["aws-h100"] }
    error_message = "A renamed pool's launch template keeps the name it was made with (${run.made.launch_template_names["aws-h100"]}), got ${output.launch_template_names["gpu-h100"]}: a name change replaces the template in AWS."
  }
}

run "rejects_nodes_above_max" {
  command = plan

  variables {
    placer_pools = {
      "aws-eu-h100" = {
        provider      = "aws"
        nodes         = 9
        min_nodes     = 0
        max_nodes     = 8
        gpu_type      = "H100-80GB"
        gpus_per_node = 8
        aws           = { region = "eu-west-1", auto_scaling_group_name = "placer-aws-eu-h100" }
      }
    }
  }

  expect_failures = [var.placer_pools]
}

run "rejects_nodes_below_min" {
  command = plan

  variables {
    placer_pools = {
      "aws-eu-h100" = {
        provider      = "aws"
        nodes         = 0
        min_nodes     = 1
        max_nodes     = 8
        gpu_type      = "H100-80GB"
        gpus_per_node = 8
        aws           = { region = "eu-west-1", auto_scaling_group_name = "placer-aws-eu-h100" }
      }
    }
  }

  expect_failures = [var.placer_pools]
}

run "rejects_aws_pool_without_target" {
  command = plan

  variables {
    placer_pools = {
      "aws-eu-h100" = {
        provider      = "aws"
        nodes         = 1
        min_nodes     = 0
        max_nodes     = 8
        gpu_type      = "H100-80GB"
        gpus_per_node = 8
        aws           = { region = "eu-west-1", eks_cluster = "ml" }
      }
    }
  }

  expect_failures = [var.placer_pools]
}

run "rejects_pool_without_settings" {
  command = plan

  variables {
    pool_settings = {}
  }

  expect_failures = [var.pool_settings]
}

run "rejects_pool_in_other_region" {
  command = plan

  variables {
    placer_pools = {
      "aws-us-h100" = {
        provider      = "aws"
        nodes         = 1
        min_nodes     = 0
        max_nodes     = 8
        gpu_type      = "H100-80GB"
        gpus_per_node = 8
        aws           = { region = "us-east-1", auto_scaling_group_name = "placer-aws-us-h100" }
      }
    }
    pool_settings = {
      "aws-us-h100" = {
        instance_type = "p5.48xlarge"
        ami_id        = "ami-0123456789abcdef0"
        subnet_ids    = ["subnet-aaaa1111"]
      }
    }
  }

  expect_failures = [aws_launch_template.pool]
}

run "region_filter_skips_other_regions" {
  command = plan

  variables {
    region = "us-east-1"
  }

  assert {
    condition     = length(aws_autoscaling_group.pool) == 0 && length(aws_launch_template.pool) == 0
    error_message = "With region set, pools in other regions are left alone."
  }
}
