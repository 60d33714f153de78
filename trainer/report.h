// trainer/report.h — a run directory as one self-contained HTML page (`quarry report`): the
// loss and validation curves and the throughput and learning rate per step (inline SVG, from
// the run's metric CSVs), the result, the memory plan, every setting, the record accounting,
// the cost comparison (data/cost, as `quarry cost` computes it) and answers of the base and the
// tuned model side by side. No script, no stylesheet, font or image from outside: the page
// opens offline. Every text that comes from the user (settings, paths, records, answers) is
// HTML-escaped; numbers are the page's own.
//
// Plots are <svg class="plot" id="plot-NAME">, one <path class="series NAME" data-points="N">
// per series whose d is "M x y" then N−1 " L x y".
#pragma once
#include <cjson/cJSON.h>
#include <stddef.h>
#include "../data/cost.h"
#include "../data/strbuf.h"

typedef struct {
    long line;                 // the record's line in its file
    char *prompt;              // the prompt as shown: the system text and the turns, labelled
    char *reference;           // the record's own answer; NULL when it has none
    char *base, *tuned;        // the models' answers; NULL when not generated
    int base_tokens, tuned_tokens;
    int base_stopped, tuned_stopped;   // 1: ended by a stop token, 0: by the token limit
} report_answer;

typedef struct {
    const char *run_dir;
    const char *name;                  // the run's name (its directory's last component)
    const cJSON *run;                  // run.json
    const cost *cost;                  // NULL: not priced, cost_note says why
    const char *cost_command;          // the `quarry cost` line giving the same figures
    const char *cost_note;
    const report_answer *answers;
    int nanswers;
    int max_new_tokens;
    const char *answers_source;        // which file the prompts come from, and how they were chosen
    const char *answers_note;          // why there are no answers (or fewer), NULL otherwise
} report_input;

// The page (malloc'ed, *len bytes), or NULL when out of memory. A missing or unreadable metric
// CSV gives a plot with a note, not an error.
char *report_html(const report_input *in, size_t *len);
// Appends s with & < > " ' as character references.
void report_escape(strbuf *b, const char *s);
void report_answer_free(report_answer *a);
