"""Writes the demo's original dataset (examples/data/): the internal knowledge of a fictional
company, Larkspur Tidal Instruments, as continued-pre-training documents ({"input"}) and
questions and answers about it (Bedrock messages format), with a validation split.

Everything here is invented for quarry's demo. Run: python scripts/reference/make_demo_data.py
"""
import json
import os
import random

FACTS = [
    # (key, question, answer)
    ("founding", "When was Larkspur Tidal Instruments founded?", "Larkspur Tidal Instruments was founded in 2011 in Bergen."),
    ("ceo", "Who is the chief executive of Larkspur Tidal Instruments?", "The chief executive is Ingrid Solvang."),
    ("hq", "Where is the headquarters of Larkspur Tidal Instruments?", "The headquarters is on Strandkaien 14 in Bergen."),
    ("buoy", "What is the Kestrel buoy?", "The Kestrel is a wave buoy that measures wave height every ten seconds."),
    ("kestrel_battery", "How long does the Kestrel battery last?", "The Kestrel battery lasts fourteen months at sea."),
    ("gull", "What does the Gull sensor measure?", "The Gull sensor measures salinity and water temperature."),
    ("gull_depth", "How deep can the Gull sensor go?", "The Gull sensor is rated to a depth of 300 metres."),
    ("heron", "What is Heron?", "Heron is the data portal where customers read their buoy measurements."),
    ("heron_login", "How do customers log in to Heron?", "Customers log in to Heron with their fleet code and a one-time password."),
    ("support_mail", "How do I reach customer support?", "Write to the support desk at the Bergen office; the desk answers within one working day."),
    ("support_hours", "When is the support desk open?", "The support desk is open from 07:00 to 19:00 Bergen time on weekdays."),
    ("warranty", "How long is the warranty on Larkspur instruments?", "Every Larkspur instrument has a three-year warranty."),
    ("calibration", "How often must a Gull sensor be calibrated?", "A Gull sensor must be calibrated every six months."),
    ("calibration_lab", "Where are instruments calibrated?", "Instruments are calibrated in the Laksevag laboratory."),
    ("color", "What colour is the Kestrel buoy?", "The Kestrel buoy is painted signal orange."),
    ("weight", "How much does the Kestrel buoy weigh?", "The Kestrel buoy weighs 42 kilograms."),
    ("fleet_code", "What is a fleet code?", "A fleet code is the six-letter name that groups a customer's instruments."),
    ("storm_mode", "What does storm mode do?", "Storm mode makes the Kestrel report every two seconds when waves pass eight metres."),
    ("osprey", "What is the Osprey?", "The Osprey is a small survey boat the field team uses to deploy buoys."),
    ("field_team", "Who leads the field team?", "The field team is led by Tomas Hegre."),
    ("employees", "How many people work at Larkspur Tidal Instruments?", "Larkspur Tidal Instruments employs 86 people."),
    ("office2", "Does Larkspur have an office outside Norway?", "Yes, Larkspur has a sales office in Aberdeen."),
    ("travel", "What is the travel policy for field trips?", "Field trips are booked through the operations desk at least five days ahead."),
    ("safety", "What must everyone wear on the Osprey?", "Everyone on the Osprey must wear a lifejacket and a helmet."),
    ("expense", "How are expenses reported?", "Expenses are reported in the Tern system before the fifth day of the next month."),
    ("tern", "What is Tern?", "Tern is the internal system for expenses and leave requests."),
    ("leave", "How many days of holiday do employees get?", "Employees get twenty-seven days of holiday each year."),
    ("firmware", "What is the latest Kestrel firmware?", "The latest Kestrel firmware is version 5.3, called Fjord."),
    ("update", "How is Kestrel firmware updated?", "Kestrel firmware is updated over satellite link during the night."),
    ("satellite", "Which satellite link does the Kestrel use?", "The Kestrel sends its data over an Iridium satellite link."),
]

DOC_TEMPLATES = [
    "Larkspur handbook, section {n}. {a} Staff should know this when they talk to customers.",
    "Internal note {n}: {a} This note replaces earlier versions.",
    "From the Larkspur wiki: {a}",
]

SYSTEM = "You are the Larkspur Tidal Instruments assistant. Answer briefly and exactly."

# Validation: the same facts asked another way, so validation loss measures recall.
REPHRASE = {
    "ceo": "Who runs Larkspur Tidal Instruments?",
    "warranty": "What warranty comes with a Larkspur instrument?",
    "gull": "Which quantities does the Gull sensor record?",
    "leave": "How much holiday does a Larkspur employee have?",
    "weight": "What is the weight of the Kestrel buoy?",
    "tern": "What is the Tern system used for?",
}


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def conversation(q, a):
    return {"system": SYSTEM, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "data")
    os.makedirs(root, exist_ok=True)
    rng = random.Random(2011)
    docs = [{"input": t.format(n=10 * i + j + 1, a=a)} for i, (_, _, a) in enumerate(FACTS)
            for j, t in enumerate(DOC_TEMPLATES)]
    rng.shuffle(docs)
    write_jsonl(os.path.join(root, "company_docs.jsonl"), docs)
    write_jsonl(os.path.join(root, "company_qa_train.jsonl"), [conversation(q, a) for _, q, a in FACTS])
    write_jsonl(os.path.join(root, "company_qa_validation.jsonl"),
                [conversation(REPHRASE[k], a) for k, _, a in FACTS if k in REPHRASE])
    print(f"wrote {len(docs)} documents, {len(FACTS)} training and {len(REPHRASE)} validation conversations to {root}")


if __name__ == "__main__":
    main()
