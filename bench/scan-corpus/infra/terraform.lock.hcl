# This file is maintained automatically by "terraform init".
provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.40.0"
  constraints = "~> 5.40"
  hashes = [
    "h1:KGPWH3pZSiJYm+cq1yxVWcDg4cFhSyLJpQtn1f5QhxA=",
    "zh:bd5f198f0a1aa33314e719c390bd5f5360aeaa5d5b7c56463bc981f81dc5ec6c",
    "zh:2f03446533c30cded2713d96e55a1a68f9e182fdf3a6c2e9f8b7b342fa537878",
  ]
}
