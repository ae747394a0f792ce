// chat-render.mjs — the independent reference for srlm's chat templates (common/chat.c): renders
// each conversation with the model's real Jinja chat_template (from its tokenizer_config.json) using
// @huggingface/jinja, the Jinja engine of transformers.js, then tokenizes the rendered text with
// @huggingface/tokenizers, and prints the ids in the format of `tok-encode.mjs tokens`.
//
//   node chat-render.mjs MODEL_DIR [--date "DD Mon YYYY"] [--no-thinking] [--text] < conversations > ids
//
// stdin: JSON lines {"messages": [...]}. As `tokenize` does, a conversation whose last message is
// not from the assistant gets the generation prompt. --date sets the template's date_string
// (Llama-3.1+; without it, "26 Jul 2024" — srlm's default — not strftime_now's today);
// --no-thinking sets enable_thinking=false (Qwen3). --text prints JSON(rendered text) instead.
import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";

const args = process.argv.slice(2);
const dir = args[0];
const opt = (name) => { const i = args.indexOf(name); return i > 0 ? args[i + 1] : undefined; };
const date = opt("--date") ?? "26 Jul 2024";
const config = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
const tokenizer = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")), config);
const template = new Template(config.chat_template);
// special tokens are strings or AddedToken objects in tokenizer_config.json
const tokenText = (t) => (t && typeof t === "object" ? t.content : t ?? "");

const out = [];
for (const line of readFileSync(0, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const { messages } = JSON.parse(line);
    const text = template.render({
        messages,
        add_generation_prompt: messages[messages.length - 1].role !== "assistant",
        bos_token: tokenText(config.bos_token),
        eos_token: tokenText(config.eos_token),
        date_string: date,
        enable_thinking: !args.includes("--no-thinking"),
    });
    out.push(args.includes("--text") ? JSON.stringify(text)
                                      : tokenizer.encode(text, { add_special_tokens: false }).ids.join(" "));
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
