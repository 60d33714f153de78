"""Checks what Chromium rendered of `quarry report`: the screenshot (a PNG of the page, not
blank) and the DOM it built (html.parser over --dump-dom: text as the reader sees it).

usage: check_report.py REPORT.png DOM.html RUN COST.json
"""
import csv
import html.parser
import json
import struct
import sys
import zlib

png_path, dom_path, run_dir, cost_path = sys.argv[1:5]
fails = []


def check(what, ok, evidence=""):
    if not ok:
        fails.append(what)
        print("FAIL: %s%s" % (what, "\n  " + str(evidence) if evidence else ""))


# --- the screenshot: a PNG of the window's size whose pixels are not one colour ---
data = open(png_path, "rb").read()
check("the screenshot is a PNG", data[:8] == b"\x89PNG\r\n\x1a\n", data[:8])
w, h = struct.unpack(">II", data[16:24])
check("the screenshot is 1200 × 2400", (w, h) == (1200, 2400), (w, h))
idat, pos = b"", 8
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
raw = zlib.decompress(idat)
# Rows of filtered bytes; a blank page is one value nearly everywhere. Count the pixels (RGB(A)
# after the filter byte) of rows that are not constant: the plots, tables and text.
bpp = 4 if data[25] == 6 else 3
stride = 1 + w * bpp
busy = sum(1 for r in range(h) if len(set(raw[r * stride + 1:(r + 1) * stride])) > 2)
check("the screenshot is not blank (rows with content)", busy > h // 5, "%d of %d rows have content" % (busy, h))


# --- the DOM ---
class Dom(html.parser.HTMLParser):
    """Elements as (tag, attrs, text) with the text of their subtree; the open stack for text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements, self.stack, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        el = [tag, dict(attrs), []]
        self.elements.append(el)
        if tag not in ("path", "circle", "line", "rect", "meta", "br", "input", "img", "link"):
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.elements.append([tag, dict(attrs), []])

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, d):
        for el in self.stack:
            el[2].append(d)


dom = Dom()
dom.feed(open(dom_path, encoding="utf-8").read())
els = [(t, a, "".join(x)) for t, a, x in dom.elements]
by_id = {a["id"]: (t, a, x) for t, a, x in els if "id" in a}
run = json.load(open(run_dir + "/run.json"))
name = run_dir.rstrip("/").rsplit("/", 1)[-1]

check("the run's name in the title and heading", by_id.get("run-name", (0, 0, ""))[2] == name and
      any(t == "title" and name in x for t, a, x in els), by_id.get("run-name"))
check("no script element in the DOM", "script" not in dom.tags, dom.tags)


def rows(table_id):
    """The table's rows as lists of cell texts (th and td)."""
    t = by_id.get(table_id)
    if not t:
        return []
    out, inside, cur = [], False, None
    for tag, a, x in els:
        if tag == "table" and a.get("id") == table_id:
            inside = True
            continue
        if inside and tag == "table":
            break
        if inside and tag == "tr":
            cur = []
            out.append(cur)
        elif inside and tag in ("td", "th") and cur is not None:
            cur.append(x.strip())
    return out


# Settings: every value of run.json's settings, as the page formats it.
settings = {r[0]: r[1] for r in rows("settings-table") if len(r) == 2}
for key, v in run["settings"].items():
    want = ("true" if v else "false") if isinstance(v, bool) else ("%.6g" % v) if isinstance(v, (int, float)) \
        else (v or "(none)")
    check("setting %s shown as %r" % (key, want), settings.get(key) == want, settings.get(key))
check("what training resolved is shown beside the settings", settings.get("template used") == run["template"],
      settings.get("template used"))
check("the settings include the run's real values", settings.get("lora_r") == "16" and
      settings.get("max_seq_len") == "80" and settings.get("truncate") == "left", settings)

# Record accounting: the counts of run.json's records.data.
rec = {r[0]: r[1] for r in rows("records-data") if len(r) == 2}
d = run["records"]["data"]
check("records counted as in run.json (16 records, 15 whole, 1 truncated, 0 dropped)",
      (rec.get("records"), rec.get("trained whole"), rec.get("truncated (kept, cut)"), rec.get("dropped")) ==
      (str(d["records"]), str(d["whole"]), str(d["truncated"]), str(d["dropped"])) and d["truncated"] == 1, rec)
check("answer tokens kept", rec.get("answer tokens kept") == "%d of %d" % (d["answer_tokens_kept"], d["answer_tokens"]),
      rec)

# Plots: one path per series with one point per CSV row (d = "M x y" then " L x y" per point).
def csv_rows(name):
    with open(run_dir + "/" + name) as f:
        return list(csv.DictReader(f))


train_rows, val_rows = csv_rows("step_wise_training_metrics.csv"), csv_rows("validation_metrics.csv")
check("the run has steps and evaluations to plot", len(train_rows) >= 4 and len(val_rows) >= 3,
      (len(train_rows), len(val_rows)))
paths = {}
for t, a, x in els:
    if t == "path" and "series" in a.get("class", ""):
        paths[a["class"].split()[1]] = a
for series, n in (("training", len(train_rows)), ("validation", len(val_rows)), ("throughput", len(train_rows)),
                  ("learning_rate", len(train_rows)), ("grad_norm", len(train_rows))):
    p = paths.get(series)
    check("plot path %s exists" % series, p is not None, sorted(paths))
    if p:
        dd = p["d"].split()
        pts = dd.count("M") + dd.count("L")
        check("plot %s has %d points (one per CSV row)" % (series, n), pts == n and int(p["data-points"]) == n
              and dd[0] == "M" and len(dd) == 3 * n, p["d"][:80])
plots = [a["id"] for t, a, x in els if t == "svg" and "plot" in a.get("class", "")]
check("four plots", plots == ["plot-loss", "plot-throughput", "plot-learning-rate", "plot-grad-norm"], plots)

# The records' <script> is text on the page: in the prompts of the answers table.
ans = rows("answers-table")
check("two answered prompts (header + 2 rows)", len(ans) == 3, ans)
check("the <script> of a record is shown as text",
      all("<script>alert('x" in r[1] and "& \"q\"" in r[1] for r in ans[1:]), ans[1:])
check("the record's answer with </pre><b> shown as text", all(r[4].startswith("It is ") and "</pre><b>bold</b>" in r[4]
                                                              for r in ans[1:]), ans[1:])
check("base and tuned answers are there", all(len(r) == 5 and "tokens" in r[2] and "tokens" in r[3] for r in ans[1:]),
      ans[1:])

# Cost: the cells are quarry cost --json's figures, as its table formats money.
c = json.load(open(cost_path))


def money(v):
    if v is None:
        return "unknown"
    return "$%.4f" % v if v != 0 and abs(v) < 0.01 else "$%.2f" % v


cost_rows = {r[0]: r[1:] for r in rows("cost-table")}
want = {"training": [c["on_prem"]["training_usd"], c["managed"]["training_usd"]],
        "model storage / month": [c["serving"]["custom_model_import"]["storage_usd_per_month"],
                                  c["managed"]["storage_per_month_usd"]],
        "serving / month": [c["serving"]["custom_model_import"]["usd_per_month"],
                            c["serving"]["provisioned_throughput"]["usd_per_month"]],
        "first month": [c["first_month"]["on_prem_usd"], c["first_month"]["managed_usd"]]}
for label, (a, b) in want.items():
    check("cost %s = quarry cost's %s / %s" % (label, money(a), money(b)), cost_rows.get(label) == [money(a), money(b)],
          cost_rows.get(label))
check("CMI serving is priced for Llama 3.1 8B", c["serving"]["custom_model_import"]["usd_per_month"] is not None, c)

sys.exit(1 if fails else 0)
