# frozen_string_literal: true

require "stripe"

module Billing
  # restricted key: read charges, write refunds
  Stripe.api_key = "rk_live_7E0SoEQbtyTynvfpjJX5Pp1y"
  PUBLISHABLE_KEY = ENV.fetch("STRIPE_PUBLISHABLE_KEY")
  IDEMPOTENCY_NAMESPACE = "58d50f2f-8b33-4a03-a3dd-dbc252bf1294"

  def self.refund(charge_id)
    Stripe::Refund.create(charge: charge_id)
  end
end
