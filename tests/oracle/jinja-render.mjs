// jinja-render.mjs — the reference for srlm's Jinja renderer (common/jinja.c): renders a
// tokenizer_config.json's chat_template with @huggingface/jinja (the engine of transformers.js)
// for each input line, as `test-jinja render` does with the C renderer.
//
//   node jinja-render.mjs CONFIG_JSON [--date "DD Mon YYYY"] < cases.jsonl > out.jsonl
//
// stdin: JSON lines, each an object of template variables ({"messages": [...], "tools": [...],
// ...}). Added unless the line sets them: add_generation_prompt (true when the last message is
// not from the assistant), bos_token and eos_token (the config's), date_string (--date, default
// "26 Jul 2024"). strftime_now() formats that same day (00:00), not today.
// stdout: one line per input, {"text": rendered} or {"error": message}.
import { readFileSync } from "node:fs";
import { Template, Environment } from "@huggingface/jinja";

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i > 0 ? args[i + 1] : undefined; };
const date = opt("--date") ?? "26 Jul 2024";
const config = JSON.parse(readFileSync(args[0], "utf8"));
const tokenText = (t) => (t && typeof t === "object" ? t.content : t);
const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const [dd, mon, yyyy] = date.split(" ");
const day = new Date(Number(yyyy), months.indexOf(mon), Number(dd));

// utils.ts strftime, on the fixed day
function strftime(format) {
    const pad2 = (n) => (n < 10 ? "0" + n : String(n));
    const long = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                  "October", "November", "December"];
    return format.replace(/%[YmdbBHM%]/g, (t) => ({
        "%Y": String(day.getFullYear()), "%m": pad2(day.getMonth() + 1), "%d": pad2(day.getDate()),
        "%b": months[day.getMonth()], "%B": long[day.getMonth()], "%H": pad2(day.getHours()),
        "%M": pad2(day.getMinutes()), "%%": "%",
    })[t]);
}

// strftime_now is a global the renderer declares itself: swap in the fixed day's
const declare = Environment.prototype.set;
Environment.prototype.set = function (name, value) {
    return declare.call(this, name, name === "strftime_now" ? strftime : value);
};

let template, parseError;
try {
    template = new Template(config.chat_template);
} catch (e) {
    parseError = String(e.message ?? e);
}
const out = [];
for (const line of readFileSync(0, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const vars = JSON.parse(line);
    if (parseError) { out.push(JSON.stringify({ error: parseError })); continue; }
    const msgs = vars.messages ?? [];
    const items = {
        add_generation_prompt: msgs.length > 0 && msgs[msgs.length - 1].role !== "assistant",
        date_string: date,
        ...vars,
    };
    if (!("bos_token" in vars) && tokenText(config.bos_token) != null) items.bos_token = tokenText(config.bos_token);
    if (!("eos_token" in vars) && tokenText(config.eos_token) != null) items.eos_token = tokenText(config.eos_token);
    try {
        out.push(JSON.stringify({ text: template.render(items) }));
    } catch (e) {
        out.push(JSON.stringify({ error: String(e.message ?? e) }));
    }
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
