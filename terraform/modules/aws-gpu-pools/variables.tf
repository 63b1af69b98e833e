variable "placer_pools" {
  description = <<-EOT
    Elastic pools as written by placer into placer.auto.tfvars.json (key: pool name).
    Only pools with provider = "aws" are managed here; others (gcp) are ignored, so the
    same file can be passed to every provider module unchanged.
  EOT
  type = map(object({
    provider      = string
    nodes         = number
    min_nodes     = number
    max_nodes     = number
    gpu_type      = string
    gpus_per_node = number
    spot          = optional(bool, false)
    aws = optional(object({
      region                  = string
      auto_scaling_group_name = optional(string)
      eks_cluster             = optional(string)
      eks_nodegroup           = optional(string)
    }))
    gcp = optional(object({
      project                = string
      zone                   = optional(string)
      region                 = optional(string)
      instance_group_manager = string
    }))
  }))
  default = {}

  validation {
    condition     = alltrue([for name, p in var.placer_pools : contains(["aws", "gcp"], p.provider)])
    error_message = "Every pool's provider must be \"aws\" or \"gcp\" (placer writes only elastic cloud pools to tfvars)."
  }

  validation {
    condition = alltrue([for name, p in var.placer_pools :
      p.min_nodes >= 0 && p.min_nodes <= p.max_nodes &&
      floor(p.min_nodes) == p.min_nodes && floor(p.max_nodes) == p.max_nodes
    ])
    error_message = "Every pool needs whole numbers 0 <= min_nodes <= max_nodes."
  }

  validation {
    condition = alltrue([for name, p in var.placer_pools :
      p.nodes >= p.min_nodes && p.nodes <= p.max_nodes && floor(p.nodes) == p.nodes
    ])
    error_message = "Every pool's nodes must be a whole number within min_nodes..max_nodes; pools out of range: ${join(", ", [for name, p in var.placer_pools : "${name} (nodes=${p.nodes}, range ${p.min_nodes}..${p.max_nodes})" if p.nodes < p.min_nodes || p.nodes > p.max_nodes || floor(p.nodes) != p.nodes])}."
  }

  validation {
    condition     = alltrue([for name, p in var.placer_pools : p.gpus_per_node >= 1 && floor(p.gpus_per_node) == p.gpus_per_node])
    error_message = "Every pool's gpus_per_node must be a whole number >= 1."
  }

  validation {
    # An aws pool targets exactly one of: an Auto Scaling group, or an EKS managed node group.
    condition = alltrue([for name, p in var.placer_pools :
      p.aws != null && (
        (try(p.aws.auto_scaling_group_name, null) != null) !=
        (try(p.aws.eks_cluster, null) != null && try(p.aws.eks_nodegroup, null) != null)
      ) &&
      ((try(p.aws.eks_cluster, null) == null) == (try(p.aws.eks_nodegroup, null) == null))
      if p.provider == "aws"
    ])
    error_message = "Every aws pool needs an aws block with either auto_scaling_group_name, or both eks_cluster and eks_nodegroup (not both kinds)."
  }
}

variable "pool_settings" {
  description = <<-EOT
    Launch settings per aws pool (key: pool name); placer decides how many nodes, this
    decides what a node is. Required for every aws pool this module manages.
      instance_type         EC2 instance type of one node (e.g. p5.48xlarge for 8x H100-80GB)
      extra_instance_types  spot ASG pools only: more types the Spot request may use
      ami_id                AMI for Auto Scaling group pools (required there; EKS pools use eks_ami_type)
      subnet_ids            subnets the nodes go into
      security_group_ids    optional, for the launch template
      key_name              optional EC2 key pair
      user_data             optional, plain text (base64-encoded here)
      iam_instance_profile  optional instance profile name for ASG nodes
      root_volume_size_gb   optional root EBS size
      node_role_arn         EKS pools: IAM role of the node group (required there)
      eks_ami_type          EKS pools: AMI type, default AL2023_x86_64_NVIDIA (NVIDIA drivers included)
      labels                EKS pools: extra Kubernetes node labels
      tags                  extra tags for every resource of the pool
  EOT
  type = map(object({
    instance_type        = string
    extra_instance_types = optional(list(string), [])
    ami_id               = optional(string)
    subnet_ids           = list(string)
    security_group_ids   = optional(list(string), [])
    key_name             = optional(string)
    user_data            = optional(string)
    iam_instance_profile = optional(string)
    root_volume_size_gb  = optional(number)
    node_role_arn        = optional(string)
    eks_ami_type         = optional(string, "AL2023_x86_64_NVIDIA")
    labels               = optional(map(string), {})
    tags                 = optional(map(string), {})
  }))
  default = {}

  validation {
    condition     = alltrue([for name, s in var.pool_settings : length(s.subnet_ids) > 0])
    error_message = "Every pool_settings entry needs at least one subnet id."
  }

  validation {
    condition = alltrue([for name, p in var.placer_pools :
      contains(keys(var.pool_settings), name)
      if p.provider == "aws" && (var.region == null || try(p.aws.region, null) == var.region)
    ])
    error_message = "Every aws pool needs a pool_settings entry; missing: ${join(", ", [for name, p in var.placer_pools : name if p.provider == "aws" && (var.region == null || try(p.aws.region, null) == var.region) && !contains(keys(var.pool_settings), name)])}."
  }

  validation {
    condition = alltrue([for name, p in var.placer_pools :
      try(var.pool_settings[name].ami_id, null) != null
      if p.provider == "aws" && try(p.aws.auto_scaling_group_name, null) != null && contains(keys(var.pool_settings), name)
    ])
    error_message = "Auto Scaling group pools need pool_settings[pool].ami_id."
  }

  validation {
    condition = alltrue([for name, p in var.placer_pools :
      try(var.pool_settings[name].node_role_arn, null) != null
      if p.provider == "aws" && try(p.aws.eks_cluster, null) != null && contains(keys(var.pool_settings), name)
    ])
    error_message = "EKS node group pools need pool_settings[pool].node_role_arn."
  }
}

variable "region" {
  description = <<-EOT
    Manage only aws pools whose aws.region equals this (one module instance per provider
    region: hashicorp/aws 5.x has one region per provider configuration). null: every
    aws pool, which must then all be in the provider's region (checked at plan time).
  EOT
  type        = string
  default     = null
}

variable "placer_plan" {
  description = "The placer_plan object from placer.auto.tfvars.json; when set, recorded as tags on the ASGs and node groups."
  type = object({
    fleet_digest = string
    serial       = number
  })
  default = null
}

variable "name_prefix" {
  description = "Prefix of the names of launch templates made from here on (<name_prefix><pool>-<unique suffix>); a template keeps the name it was made with."
  type        = string
  default     = "placer-"
}

variable "wait_for_capacity_timeout" {
  description = "How long terraform waits for ASG instances to be InService; \"0\" skips (placer verifies capacity itself)."
  type        = string
  default     = "0"
}

variable "spot_allocation_strategy" {
  description = "Spot allocation strategy of spot ASG pools."
  type        = string
  default     = "price-capacity-optimized"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
