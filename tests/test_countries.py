import pytest


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("EEUU", "Estados Unidos"),
        ("usa", "Estados Unidos"),
        ("boliviano", "Bolivia"),
        ("venezolana", "Venezuela"),
        ("espana", "España"),
        ("japon", "Japón"),
        ("corea", "Corea del Sur"),
        ("argentna", "Argentina"),
        ("colonbia", "Colombia"),
    ],
)
def test_normalises_names_demonyms_abbreviations_and_misspellings(kb, typed, expected):
    assert kb.countries.normalise(typed) == expected


def test_finds_countries_in_free_text_preferring_longer_names(kb):
    assert kb.countries.find_in_text("mi hijo esta en corea del sur hace 2 años") == "Corea del Sur"
    assert kb.countries.find_in_text("quiero ir a trabajar a estados unidos") == "Estados Unidos"
    assert kb.countries.find_in_text("quiero trabajar afuera") is None


def test_does_not_invent_countries_from_ordinary_words(kb):
    for text in (
        "hola buenas tardes",
        "necesito ayuda con mi pension",
        "gracias por todo",
        "mi patrón no me paga",  # not Paterson (a city of the United States)
        "me inscribí en el portal",  # not Portugal
        "vendo semilla de papa",  # not Sevilla
        "trabajo con americanos",
        "una casa colonial",
    ):
        assert kb.countries.find_in_text(text) is None, text


def test_a_city_counts_only_as_written_and_the_country_next_to_it_wins(kb):
    assert kb.countries.find_in_text("estoy en sevilla") == "España"
    assert kb.countries.find_in_text("mi patrón en españa no me paga") == "España"
