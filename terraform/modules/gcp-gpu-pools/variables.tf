variable "placer_pools" {
  description = <<-EOT
    Elastic pools as written by placer into placer.auto.tfvars.json (key: pool name).
    Only pools with provider = "gcp" are managed here; others (aws) are ignored, so the
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
    # A gcp pool's managed instance group is zonal (zone) or regional (region), not both.
    condition = alltrue([for name, p in var.placer_pools :
      p.gcp != null && ((try(p.gcp.zone, null) != null) != (try(p.gcp.region, null) != null))
      if p.provider == "gcp"
    ])
    error_message = "Every gcp pool needs a gcp block with exactly one of zone or region."
  }
}

variable "pool_settings" {
  description = <<-EOT
    Launch settings per gcp pool (key: pool name); required for every gcp pool.
      machine_type          e.g. a2-ultragpu-8g for 8x A100-80GB, a3-highgpu-8g for 8x H100-80GB
      source_image          boot image, e.g. projects/deeplearning-platform-release/global/images/family/common-cu124
      accelerator_type      optional; default derived from the pool's gpu_type
      subnetwork            subnetwork self link or name (network "default" when null)
      network               optional network (when subnetwork is null)
      boot_disk_size_gb     default 200
      service_account_email optional service account of the nodes
      zones                 regional pools: zones to spread over (default: all zones of the region)
      metadata, labels      extra instance metadata and labels
      tags                  network tags
  EOT
  type = map(object({
    machine_type          = string
    source_image          = string
    accelerator_type      = optional(string)
    subnetwork            = optional(string)
    network               = optional(string)
    boot_disk_size_gb     = optional(number, 200)
    service_account_email = optional(string)
    zones                 = optional(list(string), [])
    metadata              = optional(map(string), {})
    labels                = optional(map(string), {})
    tags                  = optional(list(string), [])
  }))
  default = {}

  validation {
    condition = alltrue([for name, p in var.placer_pools :
      contains(keys(var.pool_settings), name) if p.provider == "gcp"
    ])
    error_message = "Every gcp pool needs a pool_settings entry; missing: ${join(", ", [for name, p in var.placer_pools : name if p.provider == "gcp" && !contains(keys(var.pool_settings), name)])}."
  }
}

variable "labels" {
  description = "Labels for every instance."
  type        = map(string)
  default     = {}
}
