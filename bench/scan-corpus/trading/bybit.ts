import { RestClientV5 } from "bybit-api";

export const bybit = new RestClientV5({
  key: "zhRuaWHpgPpIHjdOjp",
  secret: "8jhRihVyHx9nswSQx35eytCUS50QfJAUgrPG",
  testnet: false,
});
