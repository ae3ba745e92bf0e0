"""Numbers, money, units, times and dates as English words (num2words does the counting).

Every function takes the matched source text (or its parts) and returns words; none of
them looks at context, so the speech of a unit never depends on what surrounds it.
"""

from __future__ import annotations

from num2words import num2words

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
MONTH_ABBR = {m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)}

# symbol → (singular, plural, minor singular, minor plural)
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
CURRENCY_CODES = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}

SCALES = {"k": "thousand", "K": "thousand", "thousand": "thousand", "m": "million",
          "M": "million", "million": "million", "mn": "million", "bn": "billion",
          "b": "billion", "B": "billion", "billion": "billion", "trillion": "trillion",
          "T": "trillion"}

# unit abbreviation → (singular, plural). Case matters: "m" metre vs "M" (not a unit).
UNITS = {
    "km": ("kilometre", "kilometres"), "m": ("metre", "metres"),
    "cm": ("centimetre", "centimetres"), "mm": ("millimetre", "millimetres"),
    "nm": ("nanometre", "nanometres"), "µm": ("micrometre", "micrometres"),
    "mi": ("mile", "miles"), "ft": ("foot", "feet"), "in": ("inch", "inches"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "l": ("litre", "litres"), "L": ("litre", "litres"), "ml": ("millilitre", "millilitres"),
    "mL": ("millilitre", "millilitres"),
    "s": ("second", "seconds"), "sec": ("second", "seconds"), "ms": ("millisecond", "milliseconds"),
    "µs": ("microsecond", "microseconds"), "ns": ("nanosecond", "nanoseconds"),
    "min": ("minute", "minutes"), "h": ("hour", "hours"), "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"), "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometre per hour", "kilometres per hour"),
    "kph": ("kilometre per hour", "kilometres per hour"),
    "m/s": ("metre per second", "metres per second"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"), "%": ("percent", "percent"),
}


def cardinal(digits: str) -> str:
    """'1,234' or '42' → words. Thousands separators are ignored."""
    return num2words(int(digits.replace(",", "")))


def decimal(text: str) -> str:
    """'3.14' → 'three point one four'; digits after the point are read one by one."""
    whole, _, frac = text.replace(",", "").partition(".")
    head = num2words(int(whole)) if whole else "zero"
    if not frac:
        return head
    return head + " point " + " ".join(DIGITS[int(d)] for d in frac)


def number(text: str) -> str:
    """A plain number as written: sign, thousands separators and decimals allowed.

    Four-digit integers from 1100 to 2099 without separators are read as years
    ('1999' → 'nineteen ninety-nine'), which is how people say them in running text.
    """
    sign = ""
    if text[:1] in "-−":
        sign, text = "minus ", text[1:]
    elif text[:1] == "+":
        sign, text = "plus ", text[1:]
    if "." in text:
        return sign + decimal(text)
    if not sign and len(text) == 4 and text.isdigit() and 1100 <= int(text) <= 2099:
        return year(text)
    return sign + cardinal(text)


def year(text: str) -> str:
    return num2words(int(text), to="year")


def ordinal(digits: str) -> str:
    """'21' (from '21st') → 'twenty-first'."""
    return num2words(int(digits.replace(",", "")), to="ordinal")


def is_one(text: str) -> bool:
    return text.replace(",", "").lstrip("+-−") in ("1", "1.0", "1.00")


def with_unit(num: str, unit: str) -> str:
    """'5', 'km' → 'five kilometres'; '1', 'kg' → 'one kilogram'."""
    singular, plural = UNITS[unit]
    return f"{number(num)} {singular if is_one(num) else plural}"


def fraction(num: int, den: int) -> str:
    """3, 4 → 'three quarters'; 1, 2 → 'one half'; 7, 10 → 'seven tenths'."""
    if den == 0:
        return f"{num2words(num)} over zero"
    if den == 1:
        return num2words(num)
    if den == 2:
        name = "half" if num == 1 else "halves"
    elif den == 4:
        name = "quarter" if num == 1 else "quarters"
    elif den <= 20 or den in (100, 1000):
        name = num2words(den, to="ordinal") + ("" if num == 1 else "s")
    else:
        return f"{num2words(num)} over {num2words(den)}"
    return f"{num2words(num)} {name}"


def money(symbol: str, amount: str, scale: str = "") -> str:
    """'$', '5.50' → 'five dollars and fifty cents'; '$', '1.5', 'M' → 'one point five
    million dollars'."""
    symbol = CURRENCY_CODES.get(symbol.upper(), symbol)
    one, many, minor_one, minor_many = CURRENCIES[symbol]
    amount = amount.replace(",", "")
    if scale:
        return f"{number(amount)} {SCALES[scale]} {many}"
    whole, _, cents = amount.partition(".")
    whole_n = int(whole or "0")
    words = f"{num2words(whole_n)} {one if whole_n == 1 else many}"
    if len(cents) == 2 and int(cents):
        c = int(cents)
        minor = f"{num2words(c)} {minor_one if c == 1 else minor_many}"
        return minor if whole_n == 0 else f"{words} and {minor}"
    if cents and int(cents):  # '$0.125': read the decimal rather than invent cents
        return f"{decimal(amount)} {many}"
    return words


def clock_time(hours: str, minutes: str, suffix: str = "") -> str:
    """'3', '30', 'pm' → 'three thirty p m'; '9', '00' → 'nine o'clock';
    '14', '05' → 'fourteen oh five'."""
    h, m = int(hours), int(minutes)
    words = num2words(h)
    if m == 0:
        words += " o'clock" if (h <= 12 and not suffix) else ("" if suffix else " hundred")
    elif m < 10:
        words += " oh " + num2words(m)
    else:
        words += " " + num2words(m)
    if suffix:
        letters = suffix.replace(".", "").lower()
        words += " " + " ".join(letters)  # 'p m' is how the voice says PM clearly
    return words


def month_day(month: int, day: int, year_text: str = "") -> str:
    """3, 15, '2024' → 'March fifteenth, twenty twenty-four'."""
    words = f"{MONTHS[month - 1]} {num2words(day, to='ordinal')}"
    return f"{words}, {year(year_text)}" if year_text else words


def day_month(day: int, month: int, year_text: str = "") -> str:
    """15, 3, '2024' → 'the fifteenth of March, twenty twenty-four'."""
    words = f"the {num2words(day, to='ordinal')} of {MONTHS[month - 1]}"
    return f"{words}, {year(year_text)}" if year_text else words


def month_number(name: str) -> int:
    """'March', 'Mar', 'Sept.' → 3, 3, 9."""
    return MONTH_ABBR[name[:3].lower()]


def digits_one_by_one(text: str) -> str:
    return " ".join(DIGITS[int(d)] for d in text if d.isdigit())
