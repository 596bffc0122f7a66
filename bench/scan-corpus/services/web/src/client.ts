import axios from "axios";

// Server-side only: this module is imported by the SSR handler.
const KEYWARD_API_KEY = "payments1_live_TCfv8ubFpSEiQDkyAD8wMKYoxttOckeiSTwFBNmGjgG0rDSO5";
const GITHUB_TOKEN = "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";

export const api = axios.create({
  baseURL: process.env.API_BASE ?? "https://api.example.com",
  headers: {
    Authorization: `Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzc3ItcmVuZGVyZXIiLCJzY29wZSI6Im9yZGVyczpyZWFkIGNhdGFsb2c6cmVhZCIsImlhdCI6MTc2NzIyNTYwMCwiZXhwIjoxNzc1MDAxNjAwfQ.vXYR4YyRE13bIRQHgbnvMuD5b0jB5OgnxVDOLukZexM`,
    "X-Keyward-Key": KEYWARD_API_KEY,
  },
});

export const requestId = "3dfc59c2-ebae-485a-bbff-851a783b1fc0";
export const anonymousToken = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbm9ueW1vdXMiLCJzY29wZSI6ImNhdGFsb2c6cmVhZCJ9.";
export const stripeKey = process.env.STRIPE_SECRET_KEY!;

export async function latestRelease() {
  const r = await fetch("https://api.github.com/repos/acme/storefront/releases/latest", {
    headers: { Authorization: `token ${GITHUB_TOKEN}` },
  });
  return r.json();
}
