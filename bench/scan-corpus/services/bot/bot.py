"""Slack bot that answers questions about orders with an LLM."""
import anthropic
from slack_bolt import App

SLACK_BOT_TOKEN = "xoxb-175449975181-8844086499297-ZiderINgY6kpFXMnamDFNcDw"
ANTHROPIC_API_KEY = "sk-ant-api03-ripP3WU7ncnAIijv_N2a4DOXafvFa303wssvDN4lwX77rpGfg5svEfKeZiDm-1Y0hkJSxn8tEdCA1Dcnn0MqjOcFfIRf1AA"

app = App(token=SLACK_BOT_TOKEN)
llm = anthropic.Anthropic(api_key=ANTHROPIC_API_KEY)


@app.event("app_mention")
def answer(event, say):
    msg = llm.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=512,
        messages=[{"role": "user", "content": event["text"]}],
    )
    say(msg.content[0].text)
