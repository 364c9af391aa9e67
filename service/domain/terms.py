"""Printed payment terms → ``PaymentTerms``: English, German, French, Spanish, Italian, Dutch.

Never a guess: the text is understood only when every word of it is either a value this module
reads (days net, an early-payment discount, "due on receipt") or a known filler ("payment",
"invoice date", "zahlbar"). A word it does not know may change the meaning ("30 days after
delivery", "60 giorni fine mese"), so any such word makes the whole text not understood (``None``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from decimal import Decimal
from typing import Final

from service.domain.money import decimal_text
from service.domain.schema import PaymentTerms

# Longer than any printed terms; longer text is not terms, and regexes stay cheap.
_MAX_CHARS: Final = 200
_DAYS: Final = r"(?:days?|d|tagen?|tg|jours?|j|dias?|giorni|giorno|gg|dagen|dag)\b"
_NUMBER: Final = r"(?<![\d.,])(\d{1,3})(?!\d)"
_RATE: Final = r"\b(\d{1,2}(?:[.,]\d{1,2})?)"
_PERCENT: Final = rf"{_RATE}\s*%"
_DISCOUNT_WORD: Final = r"(?:skonto|discount|escompte|descuento|sconto|korting)"
# Up to six words between a discount's parts ("2 % Skonto bei Zahlung innerhalb von 10 Tagen").
_LINK: Final = r"(?:\s+[a-z]+){0,6}\s*"
_NET_WORD: Final = r"(?:net|netto|neto|nett|rein)"

# "2/10 net 30": 2 % discount within 10 days, net in 30.
_CLASSIC: Final = re.compile(rf"{_RATE}\s*%?\s*/\s*{_NUMBER}\s*,?\s*(?:net|n)\s*/?\s*{_NUMBER}")
_PERCENT_FIRST: Final = re.compile(
    rf"{_PERCENT}\s*{_DISCOUNT_WORD}?{_LINK}{_NUMBER}\s*{_DAYS}(?:\s*{_DISCOUNT_WORD})?"
)
_DAYS_FIRST: Final = re.compile(rf"{_NUMBER}\s*{_DAYS}{_LINK}{_PERCENT}(?:\s*{_DISCOUNT_WORD})?")
_HAS_DISCOUNT_WORD: Final = re.compile(rf"{_DISCOUNT_WORD}|pronto pago|prompt payment")
_NET: Final = re.compile(
    rf"{_NET_WORD}\s*(?:a\s+)?{_NUMBER}(?:\s*{_DAYS})?"
    rf"|{_NUMBER}\s*{_DAYS}(?:\s*{_NET_WORD})?"
    rf"|\bn\s*/\s*{_NUMBER}"
)
# "Due on receipt" and its kin: the total is due at once, net 0.
_AT_ONCE: Final = re.compile(
    r"\b(?:on receipt|upon receipt|immediately|immediate|at once|sofort|bei erhalt|"
    r"a reception|des reception|a la reception|comptant|immediat|al contado|contado|"
    r"a la recepcion|inmediato|a la vista|a vista|vista fattura|al ricevimento|immediato|"
    r"per omgaande|onmiddellijk|bij ontvangst|direct|contant)\b"
)
# Words that carry no value of their own: what the terms are about, and from when they count.
_FILLER_BY_LANGUAGE: Final = {
    "en": "payment payments terms term of the within in after from date invoice invoicing payable "
    "due is are net please pay by upon on to be prompt discount",
    "de": "zahlung zahlungsbedingungen zahlungsbedingung zahlungsziel zahlbar innerhalb von vom ab "
    "nach rechnungsdatum rechnungseingang rechnung datum der die des bei ohne abzug und faellig "
    "fallig rein bis erhalt skonto",
    "fr": "paiement conditions de reglement payable sous dans les a facture nets la le et pour "
    "escompte",
    "es": "pago condiciones plazo fecha factura dentro los del en neto y por pronto descuento",
    "it": "pagamento condizioni termini di entro data fattura dalla della netto e rimessa diretta "
    "sconto",
    "nl": "betaling betalingsvoorwaarden betalingstermijn binnen na factuur factuurdatum te "
    "voldoen van bij korting",
}
_FILLER: Final = frozenset(" ".join(_FILLER_BY_LANGUAGE.values()).split())
# Words that change from when days count, or split the amount: such terms are never read.
_VETO: Final = re.compile(
    r"\b(?:eom|end of month|months?|monat|monats|monatsende|ultimo|fin de mois|mois|fin de mes|"
    r"mes|fine mese|fm|mese|einde maand|maand|delivery|lieferung|livraison|entrega|consegna|"
    r"levering|goods|ware|installments?|raten)\b"
)


class _NotUnderstoodError(ValueError):
    """The text has a word this module does not read, or says two different things."""


@functools.lru_cache(maxsize=1024)
def parse_payment_terms(text: str) -> PaymentTerms | None:
    """``PaymentTerms`` of a printed text, or ``None`` when it is not wholly understood.

    Memoized: a seller prints the same terms on every invoice.
    """
    folded = _folded(text)
    if not folded or len(folded) > _MAX_CHARS or _VETO.search(folded):
        return None
    try:
        return _terms(folded)
    except _NotUnderstoodError:
        return None


def _folded(text: str) -> str:
    """Lower case without accents (``fällig`` → ``fallig``), one space between words.

    NFKD also folds look-alikes such as the full-width percent sign into ASCII.
    """
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split())


def _terms(text: str) -> PaymentTerms | None:
    discount_percent = discount_days = classic_net = None
    match = _CLASSIC.search(text)
    if match is not None:
        percent, days, classic_net = match[1], match[2], int(match[3])
    elif _HAS_DISCOUNT_WORD.search(text):
        if match := _PERCENT_FIRST.search(text):
            percent, days = match[1], match[2]
        elif match := _DAYS_FIRST.search(text):
            days, percent = match[1], match[2]
    if match is not None:
        discount_percent = decimal_text(Decimal(percent.replace(",", ".")))
        discount_days = int(days)
        text = f"{text[: match.start()]} {text[match.end() :]}"
    net_days = _net_days(text)
    if classic_net is not None:
        if net_days not in (None, classic_net):
            raise _NotUnderstoodError(text)
        net_days = classic_net
    if net_days is None and discount_percent is None:
        return None
    return PaymentTerms(
        net_days=net_days, discount_percent=discount_percent, discount_days=discount_days
    )


def _net_days(text: str) -> int | None:
    """The net days that ``text`` states, ``None`` if none."""
    found = {
        int(next(group for group in match.groups() if group is not None))
        for match in _NET.finditer(text)
    }
    rest = _NET.sub(" ", text)
    if _AT_ONCE.search(rest):
        found.add(0)
        rest = _AT_ONCE.sub(" ", rest)
    if len(found) > 1 or any(word not in _FILLER for word in re.findall(r"[^\W_]+|%", rest)):
        raise _NotUnderstoodError(text)
    return found.pop() if found else None
