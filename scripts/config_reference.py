"""Print the configuration reference (Markdown) from the settings declared in digestd/config.py.

The README's "Configuration reference" section is this output; tests/test_config.py fails when a key
is missing from the README.
"""
from digestd.config import DigestdSettings, FetchSettings, RankingSettings, SmtpSettings, SourceSettings, UserSettings

TABLES = [("[digestd]", DigestdSettings), ("[smtp]", SmtpSettings), ("[ranking]", RankingSettings),
          ("[fetch]", FetchSettings), ("[[sources]]", SourceSettings), ("[[users]]", UserSettings)]


def default_of(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`".replace("'", '"')
    return f"`{field.default!r}`".replace("'", '"')


for title, model in TABLES:
    print(f"#### `{title}`\n")
    print("| key | default | meaning |\n|---|---|---|")
    for name, f in model.model_fields.items():
        print(f"| `{f.alias or name}` | {default_of(f)} | {f.description} |")
    print()
