import { CBAdvancedTradeClient } from "coinbase-api";

// CDP API key for the treasury portfolio
const keyName = "organizations/2eee2cc1-aa1b-48ba-9501-34a4b5990768/apiKeys/286d63d7-6071-4019-a12d-d40daaaeeab8";
const privateKey = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIAPcWppwbVjb4Uc8Z2V80uJEGJkuD/I6vJlp+F1jAtWzoAoGCCqGSM49
AwEHoUQDQgAES1u+NZIGruHcIVqlXKqHP+lmkhvZRNGH653Q7DWWyklPXGFj3mLo
aXw1+hi/hnJZF+WjovoMcB7RtsLQOixpKg==
-----END EC PRIVATE KEY-----
`;

export const coinbase = new CBAdvancedTradeClient({ apiKey: keyName, apiSecret: privateKey });
