"""How the admin writes dates and times (FORMAT_MODULE_PATH): ISO order, to the second, so
two events a few seconds apart never read as the same minute."""

DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
