"""Passwords the rating app refuses: the first ones any guesser tries.

Written for knowtune (not copied from a published list): keyboard runs, digit runs, the words people type
when asked for a password, and their obvious variants. `auth.password_problem` compares the password in
lower case, and also with leading and trailing digits and punctuation stripped, so "Password123!" and
"2024letmein" are refused too.
"""

COMMON_PASSWORDS = frozenset("""
password passw0rd passwort motdepasse contrasena password1 mypassword newpassword changeme changeit
letmein letmeinnow welcome welcome1 hello helloworld secret secrets topsecret private default
admin administrator root toor user guest test tester testing demo sample example login logon signin
qwerty qwertz azerty qwertyui qwertyuiop asdfgh asdfghjk asdfghjkl zxcvbn zxcvbnm qazwsx qazwsxedc
1qaz2wsx 1q2w3e4r 1q2w3e4r5t zaq12wsx abc123 abcd1234 abcdef abcdefg abcdefgh abcdefghij
12345678 123456789 1234567890 0123456789 87654321 987654321 11111111 00000000 12341234 11223344
iloveyou loveyou trustno1 monkey dragon master shadow sunshine princess football baseball soccer
superman batman starwars pokemon whatever nothing access freedom computer internet summer winter
spring autumn flower cheese banana chocolate cookie coffee mustang jordan michael charlie
knowtune feedback rating ratings rater raters teacher student company office
""".split())
