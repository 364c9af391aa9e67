"""parse_payment_terms(): printed terms in six languages, and never a guess."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.schema import PaymentTerms
from service.domain.terms import parse_payment_terms


def _terms(
    net_days: int | None, discount_percent: str | None = None, discount_days: int | None = None
) -> PaymentTerms:
    return PaymentTerms(
        net_days=net_days, discount_percent=discount_percent, discount_days=discount_days
    )


UNDERSTOOD: dict[str, PaymentTerms] = {
    # English
    "Net 30": _terms(30),
    "net30": _terms(30),
    "NET 45 DAYS": _terms(45),
    "30 days net": _terms(30),
    "30 days": _terms(30),
    "payable within 14 days": _terms(14),
    "Payment due within 30 days of invoice date": _terms(30),
    "Terms: Net 60": _terms(60),
    "Payment terms: 30 days from date of invoice": _terms(30),
    "due on receipt": _terms(0),
    "Due upon receipt": _terms(0),
    "Payable immediately": _terms(0),
    "2/10 net 30": _terms(30, "2", 10),
    "2/10, n/30": _terms(30, "2", 10),
    "1.5% discount within 10 days, net 30 days": _terms(30, "1.5", 10),
    "n/30": _terms(30),
    # German
    "zahlbar innerhalb von 14 Tagen": _terms(14),
    "2 % Skonto bei Zahlung innerhalb von 10 Tagen, 30 Tage netto": _terms(30, "2", 10),
    "sofort zahlbar ohne Abzug": _terms(0),
    "30 Tage netto": _terms(30),
    "Zahlungsziel: 30 Tage": _terms(30),
    "Zahlbar innerhalb 14 Tagen ohne Abzug": _terms(14),
    "netto 30 Tage": _terms(30),
    "14 Tage 2 % Skonto, 30 Tage netto": _terms(30, "2", 14),
    "Zahlbar sofort": _terms(0),
    "Zahlbar bei Erhalt der Rechnung": _terms(0),
    "Zahlbar innerhalb von 30 Tagen ab Rechnungsdatum": _terms(30),
    "3% Skonto innerhalb 8 Tagen": _terms(None, "3", 8),
    "2,5 % Skonto bei Zahlung binnen 7 Tagen": _terms(None, "2.5", 7),
    "Zahlungsbedingungen: 10 Tage 2,5 % Skonto, 45 Tage rein netto": _terms(45, "2.5", 10),
    "Fällig innerhalb von 21 Tagen": _terms(21),
    # French
    "à 30 jours": _terms(30),
    "payable à réception": _terms(0),
    "Paiement à 45 jours": _terms(45),
    "30 jours net": _terms(30),
    "net à 60 jours": _terms(60),
    "Payable sous 30 jours": _terms(30),
    "Paiement comptant": _terms(0),
    "Dès réception de la facture": _terms(0),
    "Conditions de paiement : 30 jours date de facture": _terms(30),
    "Escompte de 2 % pour paiement sous 10 jours, net à 30 jours": _terms(30, "2", 10),
    # Spanish
    "30 días": _terms(30),
    "pago a 60 días": _terms(60),
    "Pago al contado": _terms(0),
    "30 días fecha factura": _terms(30),
    "Neto 30 días": _terms(30),
    "Plazo de pago: 90 días": _terms(90),
    "Pago a la recepción de la factura": _terms(0),
    "2% de descuento por pronto pago en 10 días, neto 30 días": _terms(30, "2", 10),
    "Pago inmediato": _terms(0),
    # Italian
    "30 giorni data fattura": _terms(30),
    "Pagamento a 60 giorni": _terms(60),
    "Rimessa diretta a vista": _terms(0),
    "Pagamento entro 30 giorni dalla data fattura": _terms(30),
    "60 gg data fattura": _terms(60),
    "Pagamento immediato": _terms(0),
    "Sconto 2% per pagamento entro 10 giorni, 60 giorni netto": _terms(60, "2", 10),
    "Rimessa diretta 30 gg": _terms(30),
    # Dutch
    "binnen 30 dagen": _terms(30),
    "Betaling binnen 14 dagen na factuurdatum": _terms(14),
    "30 dagen netto": _terms(30),
    "Per omgaande": _terms(0),
    "Te voldoen binnen 30 dagen": _terms(30),
    "Betalingstermijn: 60 dagen": _terms(60),
    "2% korting bij betaling binnen 8 dagen, netto 30 dagen": _terms(30, "2", 8),
    "Bij ontvangst van de factuur": _terms(0),
    # Unicode look-alikes and spacing
    "2 \uff05 Skonto bei Zahlung innerhalb von 10 Tagen,  30 Tage netto": _terms(30, "2", 10),
    "  Net   30  ": _terms(30),
}

NOT_UNDERSTOOD = [
    "30 days EOM",
    "Net 30 days end of month",
    "30 days after delivery",
    "30 Tage nach Lieferung",
    "60 giorni fine mese",
    "60 gg d.f.f.m.",
    "30 jours fin de mois",
    "30 días fecha fin de mes",
    "Net 30, late fee 1.5% per month",
    "Net 30 or net 60",
    "2% Skonto",
    "Cash on delivery",
    "COD",
    "Lastschrift",
    "Payment by PayPal",
    "50% on order, 50% on delivery",
    "net 1000 days",
    "See contract",
    "",
    "   ",
    "x" * 500,
]


def test_the_table_has_at_least_sixty_understood_phrasings() -> None:
    assert len(UNDERSTOOD) >= 60


@pytest.mark.parametrize("text", UNDERSTOOD)
def test_printed_terms_are_understood(text: str) -> None:
    assert parse_payment_terms(text) == UNDERSTOOD[text]


@pytest.mark.parametrize("text", NOT_UNDERSTOOD)
def test_terms_with_a_word_not_understood_are_never_guessed(text: str) -> None:
    assert parse_payment_terms(text) is None


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(st.sampled_from([*UNDERSTOOD, *NOT_UNDERSTOOD, "%", "/", ",", "2"])).map(" ".join),
    )
)
def test_any_text_is_understood_or_none_and_never_raises(text: str) -> None:
    terms = parse_payment_terms(text)
    assert terms is None or isinstance(terms, PaymentTerms)
    if terms is not None:
        assert terms.net_days is not None or terms.discount_percent is not None
