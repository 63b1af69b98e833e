# Offline tests of the placement module: it has no provider, so plain plan runs.
# Paths are relative to the module directory, where `terraform test` runs.

variables {
  plan_file = "tests/fixtures/plan.json"
  pool_providers = {
    "aws-eu-h100"     = "aws"
    "gcp-eu-a100"     = "gcp"
    "onprem-fra-a100" = "kubernetes"
  }
}

run "reads_pool_nodes" {
  command = plan

  assert {
    condition = output.pool_nodes == {
      "aws-eu-h100"     = 2
      "gcp-eu-a100"     = 1
      "onprem-fra-a100" = 4
      "edge-ams-orin"   = 3
    }
    error_message = "pool_nodes maps every pool of the plan to its nodes."
  }
  assert {
    condition     = output.format_version == 1
    error_message = "format_version is the plan's formatVersion."
  }
  assert {
    condition     = output.pool_gpus["onprem-fra-a100"] == { used = 8, capacity = 32 }
    error_message = "pool_gpus carries gpusUsed and gpusCapacity."
  }
  assert {
    condition     = output.fleet_digest == "sha256:3f1c9a7e5b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e" && output.prior_state_serial == 3 && output.solver_status == "OPTIMAL"
    error_message = "Plan metadata is passed through."
  }
}

run "groups_nodes_by_provider" {
  command = plan

  assert {
    condition     = output.aws_pool_nodes == { "aws-eu-h100" = 2 }
    error_message = "aws_pool_nodes holds only the aws pools."
  }
  assert {
    condition     = output.gcp_pool_nodes == { "gcp-eu-a100" = 1 }
    error_message = "gcp_pool_nodes holds only the gcp pools."
  }
  assert {
    condition     = output.pool_nodes_by_provider["kubernetes"] == { "onprem-fra-a100" = 4 }
    error_message = "pool_nodes_by_provider groups every provider named in pool_providers."
  }
  assert {
    condition     = output.unmapped_pools == tolist(["edge-ams-orin"])
    error_message = "unmapped_pools lists plan pools without a provider."
  }
}

run "no_pool_providers_gives_empty_provider_maps" {
  command = plan

  variables {
    pool_providers = {}
  }

  assert {
    condition     = output.pool_nodes_by_provider == {} && output.aws_pool_nodes == {} && output.gcp_pool_nodes == {}
    error_message = "Without pool_providers the per-provider maps are empty."
  }
  assert {
    condition     = length(output.pool_nodes) == 4
    error_message = "pool_nodes does not depend on pool_providers."
  }
}

run "rejects_unknown_format_version" {
  command = plan

  variables {
    plan_file = "tests/fixtures/plan-format-v2.json"
  }

  expect_failures = [output.format_version, output.pool_nodes]
}

run "rejects_duplicate_pool" {
  command = plan

  variables {
    plan_file = "tests/fixtures/plan-duplicate-pool.json"
  }

  expect_failures = [output.pool_nodes]
}

run "rejects_missing_file" {
  command = plan

  variables {
    plan_file = "tests/fixtures/no-such-plan.json"
  }

  expect_failures = [var.plan_file]
}

run "rejects_file_without_pools" {
  command = plan

  variables {
    plan_file = "tests/fixtures/not-a-plan.json"
  }

  expect_failures = [var.plan_file]
}

run "warns_on_pool_providers_naming_unknown_pool" {
  command = plan

  variables {
    pool_providers = {
      "aws-eu-h100" = "aws"
      "aws-us-h100" = "aws"
    }
  }

  expect_failures = [check.pool_providers_name_plan_pools]

  assert {
    condition     = output.aws_pool_nodes == { "aws-eu-h100" = 2 }
    error_message = "Pools absent from the plan get no node count."
  }
}
