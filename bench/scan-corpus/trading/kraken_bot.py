import krakenex

# Kraken API credentials for the rebalancer sub-account
KRAKEN_API_KEY = "s27AfpPDurLCDbPME0WcW5f8jTY/4gm1MWGAvKLkHgvmx6aZC5iS1ENo"
KRAKEN_PRIVATE_KEY = "zpqfPYmoj8JSOPCUmgru3whSJlgm9stmzV4dhIsISLysYHEhRJOmnn0oaUA7sTd6RQmUKgeLNy8wqewX60MxFw=="

api = krakenex.API(key=KRAKEN_API_KEY, secret=KRAKEN_PRIVATE_KEY)
print(api.query_private("Balance"))
