"""Exchange clients (ccxt)."""
import ccxt

binance = ccxt.binance({
    "apiKey": "K6WvAUBKL1EWr55A5Qdsb0cx024oXsXq4tZcvR5HhrbTtpWlWXurbKJslGYtxlkO",
    "secret": "OyocIm5mRCCjvZqTrrtwJXRM1PW1P9zlts1OokdcFSDTC5hxGwrBFtwKHA7mp8Fk",
    "options": {"defaultType": "spot"},
})

kucoin = ccxt.kucoin({
    "apiKey": "9f7a07fd285cfd9726a0385a",
    "secret": "ec5d5540-3757-4a98-8351-496d37e86cbc",
    "password": "yma9IEmyZ4Ch",
})

bitfinex = ccxt.bitfinex({
    "apiKey": "4iuaEhImDikZsukHwo8VPOr1DH0okoGbcn8MXNeAkWN",
    "secret": "XBdg1a3InW2P6CV8ITuc3rbYVJdLt1e3afUP1i64rFQ",
})

LAST_ORDER_ID = "c5563fb4-9b44-444e-a8ad-5f921dd2a2aa"
