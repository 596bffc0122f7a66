// Send order notifications by SMS through Twilio.
const twilio = require("twilio");

const accountSid = "AC4ff3ca663e0eca1e1f14b3a5fae44d82";
const twilioApiKey = "SKdc1692e34cd1ed2689e2da860b892304";
const twilioApiSecret = process.env.TWILIO_API_SECRET;

const client = twilio(twilioApiKey, twilioApiSecret, { accountSid });

module.exports.notify = (to, body) =>
  client.messages.create({ to, from: "+15005550006", body });
