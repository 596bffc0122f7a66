package com.acme.mailer;

import com.sendgrid.SendGrid;
import com.twilio.Twilio;

public final class Mailer {
    // FIXME: read from Vault
    private static final String SENDGRID_API_KEY = "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";
    private static final String TWILIO_ACCOUNT_SID = "AC4cc99321e786ce639edb018905828451";
    // Twilio API key SID used for SMS fallbacks
    private static final String TWILIO_API_KEY = "SK08482266e0543bf5707f6d397da74fcf";
    private static final String TEMPLATE_ID = "d-c1d9ec3058c6363cb9d985618db99f4b";

    private final SendGrid sendGrid = new SendGrid(SENDGRID_API_KEY);

    public Mailer() {
        Twilio.init(TWILIO_API_KEY, System.getenv("TWILIO_API_SECRET"), TWILIO_ACCOUNT_SID);
    }
}
