terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.40"
    }
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 3.100"
    }
  }
}

provider "aws" {
  region     = "eu-west-1"
  access_key = "AKIASIONRLBL6SEPLG6T"
  secret_key = "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"
}

resource "aws_db_instance" "orders" {
  identifier        = "orders-prod"
  engine            = "postgres"
  engine_version    = "16.2"
  instance_class    = "db.t4g.medium"
  allocated_storage = 50
  username          = "orders"
  password          = "ibltoCrWK702DiUTDq-aDY!fVl5xCh"
  skip_final_snapshot = false
}

resource "aws_lambda_function" "thumbnailer" {
  function_name    = "thumbnailer"
  filename         = "build/thumbnailer.zip"
  source_code_hash = "59f3c04ef2197b2dfbbc0231b28217125ab1edd0f14b93b8c6f0e70518fa89e9"
  handler          = "index.handler"
  runtime          = "nodejs20.x"
  role             = aws_iam_role.lambda.arn
}

locals {
  storage_connection = "DefaultEndpointsProtocol=https;AccountName=shopassets;AccountKey=1TDBN8WKR92wDRpMVEAt2ePXZ1GG7hgBKJ0pNxoYVH4wJW+u4I7M3+m4xbqTdPejdFt9kkd9sDcwNdhGaF6McQ==;EndpointSuffix=core.windows.net"
  ami_id             = "ami-0c55b159cbfafe1f0"
  commit             = "e4cea660fcb9fa22faed1c3cb951c1bf881f0941"
}

variable "db_password" {
  type      = string
  sensitive = true
  default   = "changeme"
}

resource "slack_webhook" "alerts" {
  url = "https://hooks.slack.com/services/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"
}
