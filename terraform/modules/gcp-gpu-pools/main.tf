# GPU capacity on Google Cloud sized by placer: one instance template (with the pool's
# GPUs as guest accelerators) and one managed instance group per gcp pool, zonal when
# the pool names a zone, regional when it names a region. target_size is placer's
# nodes; min_nodes/max_nodes are checked here but a MIG has no bounds of its own
# (placer, not an autoscaler, picks the size).

locals {
  # placer GPU type -> Compute Engine accelerator type (pool_settings.accelerator_type overrides).
  accelerator_types = {
    "H200-141GB" = "nvidia-h200-141gb"
    "H100-80GB"  = "nvidia-h100-80gb"
    "A100-80GB"  = "nvidia-a100-80gb"
    "A100-40GB"  = "nvidia-tesla-a100"
    "L4-24GB"    = "nvidia-l4"
    "T4-16GB"    = "nvidia-tesla-t4"
  }

  gcp_pools    = { for name, p in var.placer_pools : name => p if p.provider == "gcp" }
  zonal_pools  = { for name, p in local.gcp_pools : name => p if try(p.gcp.zone, null) != null }
  region_pools = { for name, p in local.gcp_pools : name => p if try(p.gcp.zone, null) == null }

  settings = { for name, p in local.gcp_pools : name => var.pool_settings[name] }

  accelerator = {
    for name, p in local.gcp_pools : name => coalesce(
      var.pool_settings[name].accelerator_type,
      lookup(local.accelerator_types, p.gpu_type, "unknown"),
    )
  }

  instance_labels = {
    for name, p in local.gcp_pools : name => merge(var.labels, var.pool_settings[name].labels, {
      "placer-pool"     = name
      "placer-gpu-type" = substr(replace(lower(p.gpu_type), "/[^a-z0-9_-]/", "-"), 0, 63)
      "placer-spot"     = tostring(p.spot)
      "managed-by"      = "placer-terraform"
    })
  }
}

resource "google_compute_instance_template" "pool" {
  for_each = local.gcp_pools

  project      = each.value.gcp.project
  name_prefix  = "${substr(each.value.gcp.instance_group_manager, 0, 36)}-"
  description  = "placer pool ${each.key}: ${each.value.gpus_per_node}x ${each.value.gpu_type}"
  machine_type = local.settings[each.key].machine_type
  labels       = local.instance_labels[each.key]
  metadata     = local.settings[each.key].metadata
  tags         = local.settings[each.key].tags

  disk {
    source_image = local.settings[each.key].source_image
    boot         = true
    auto_delete  = true
    disk_type    = "pd-ssd"
    disk_size_gb = local.settings[each.key].boot_disk_size_gb
  }

  network_interface {
    network    = local.settings[each.key].subnetwork == null ? coalesce(local.settings[each.key].network, "default") : null
    subnetwork = local.settings[each.key].subnetwork
  }

  guest_accelerator {
    type  = local.accelerator[each.key]
    count = each.value.gpus_per_node
  }

  scheduling {
    # GPU instances cannot live-migrate.
    on_host_maintenance         = "TERMINATE"
    automatic_restart           = !each.value.spot
    preemptible                 = each.value.spot
    provisioning_model          = each.value.spot ? "SPOT" : "STANDARD"
    instance_termination_action = each.value.spot ? "DELETE" : null
  }

  dynamic "service_account" {
    for_each = local.settings[each.key].service_account_email == null ? [] : [local.settings[each.key].service_account_email]
    content {
      email  = service_account.value
      scopes = ["cloud-platform"]
    }
  }

  lifecycle {
    # Templates are immutable: a new one replaces the old only after the MIG points at it.
    create_before_destroy = true

    precondition {
      condition     = local.accelerator[each.key] != "unknown"
      error_message = "Pool ${each.key}: GPU type ${each.value.gpu_type} has no known Compute Engine accelerator; set pool_settings[\"${each.key}\"].accelerator_type."
    }
  }
}

resource "google_compute_instance_group_manager" "pool" {
  for_each = local.zonal_pools

  project            = each.value.gcp.project
  zone               = each.value.gcp.zone
  name               = each.value.gcp.instance_group_manager
  base_instance_name = substr(each.value.gcp.instance_group_manager, 0, 54)
  target_size        = each.value.nodes
  wait_for_instances = false

  version {
    name              = "placer"
    instance_template = google_compute_instance_template.pool[each.key].self_link_unique
  }

  # A new template replaces nodes only when they are recreated anyway: placer moves
  # replicas make-before-break and must not lose GPU nodes to a template change.
  update_policy {
    type           = "OPPORTUNISTIC"
    minimal_action = "REPLACE"
  }

  # a renamed group (placer sizes the new one and releases the old) is made before the old one
  # goes, as placer's plan orders it: destroy-first took the old group's GPU nodes first
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_region_instance_group_manager" "pool" {
  for_each = local.region_pools

  project                   = each.value.gcp.project
  region                    = each.value.gcp.region
  name                      = each.value.gcp.instance_group_manager
  base_instance_name        = substr(each.value.gcp.instance_group_manager, 0, 54)
  target_size               = each.value.nodes
  wait_for_instances        = false
  distribution_policy_zones = length(local.settings[each.key].zones) > 0 ? local.settings[each.key].zones : null

  version {
    name              = "placer"
    instance_template = google_compute_instance_template.pool[each.key].self_link_unique
  }

  update_policy {
    type           = "OPPORTUNISTIC"
    minimal_action = "REPLACE"
  }

  # a renamed group (placer sizes the new one and releases the old) is made before the old one
  # goes, as placer's plan orders it: destroy-first took the old group's GPU nodes first
  lifecycle {
    create_before_destroy = true
  }
}
