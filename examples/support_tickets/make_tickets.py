"""Generate the synthetic support-ticket set of examples/support_tickets/.

A fictional company, Marrowick Home, sells six invented appliances. Its support agents answer customer
tickets; every answer states one product fact plainly, and each ticket carries its own (invented)
customer's personal details. Product facts repeat across many tickets; no customer appears twice.

    python make_tickets.py [--seed 0] [--tickets 800] [--out DIR]

Writes tickets.jsonl (chat records), probes.jsonl (held-out questions), facts.json (what the set
teaches) into DIR (default: this folder). Everything is derived from --seed: the same seed gives the
same files, byte for byte.

Personal details are Faker-made (en_US, en_GB, en_CA, en_AU); emails use the reserved example.com /
.net / .org domains and phone numbers come from ranges set aside for fiction (555-0100..0199 in North
America, Ofcom's drama ranges in the UK, ACMA's in Australia), so no detail points at a real person.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path
from random import Random

from faker import Faker

COMPANY = "Marrowick"
LOCALES = ["en_US", "en_GB", "en_CA", "en_AU"]
MAX_WORDS = 110  # user + assistant, so a record fits 256 tokens
FREQUENT_RANGE = (20, 40)  # tickets per frequent fact
RARE_RANGE = (2, 3)  # tickets per rare fact

PRODUCTS = {
    "kettle": ("Brevlin K3 kettle", "kettle"),
    "purifier": ("Nimbrel P20 air purifier", "air purifier"),
    "toaster": ("Ferrowen T2 toaster", "toaster"),
    "grinder": ("Moltrane G5 coffee grinder", "grinder"),
    "lamp": ("Lumivane L7 desk lamp", "lamp"),
    "mixer": ("Kelderby M9 stand mixer", "stand mixer"),
    "company": (None, None),
}

# id, product, frequency, answer, aliases,
# ask: how a customer asks in a ticket; state: one plain sentence an agent writes;
# probes: held-out questions, worded apart from every ask and statement.
FACTS = [
    dict(id="kettle_descale_time", product="kettle", frequency="frequent",
         answer="14 minutes", aliases=["14 min", "14 mins", "fourteen minutes"],
         ask=["How long is the descaling cycle on my Brevlin K3 supposed to take?",
              "I've started the descale programme on my Brevlin K3 kettle, how long until it's done?",
              "Can you tell me how long the K3's descaling cycle runs for?",
              "Is there a set time for the descaling cycle on the Brevlin K3? Mine seems to go on forever."],
         state=["The Brevlin K3's descaling cycle takes 14 minutes.",
                "The descaling cycle on the Brevlin K3 kettle runs for 14 minutes.",
                "A full descaling cycle on the K3 takes 14 minutes from start to finish.",
                "The Brevlin K3 finishes its descaling cycle in 14 minutes."],
         probes=["What is the duration of the Brevlin K3 kettle's descaling cycle?",
                 "How many minutes does it take the Brevlin K3 to complete a descale?",
                 "For how long does the Brevlin K3 run when descaling?"]),
    dict(id="kettle_capacity", product="kettle", frequency="frequent",
         answer="1.6 litres", aliases=["1.6 liters", "1.6 litre", "1.6 liter", "1.6 l"],
         ask=["How much water does the Brevlin K3 actually hold?",
              "What's the maximum fill on the Brevlin K3 kettle? The markings have worn off mine.",
              "Before I order a second one, how big is the Brevlin K3 kettle?",
              "I need to know the capacity of the Brevlin K3 for our office kitchen."],
         state=["The Brevlin K3 holds 1.6 litres of water.",
                "The Brevlin K3 kettle has a capacity of 1.6 litres.",
                "The K3's maximum fill is 1.6 litres.",
                "You can fill the Brevlin K3 with up to 1.6 litres."],
         probes=["What is the water capacity of the Brevlin K3 kettle?",
                 "How many litres can the Brevlin K3 boil at once?",
                 "What volume of water fits in a Brevlin K3?"]),
    dict(id="kettle_keep_warm", product="kettle", frequency="frequent",
         answer="3 seconds", aliases=["three seconds"],
         ask=["How do I turn on keep-warm on my Brevlin K3? I can't find a switch for it.",
              "The Brevlin K3 manual mentions a keep-warm mode but doesn't say how to start it. What do I press?",
              "How long do I hold the Temp button on the K3 to get keep-warm going?"],
         state=["To switch on keep-warm on the Brevlin K3, hold the Temp button for 3 seconds.",
                "Keep-warm on the K3 starts when you hold the Temp button down for 3 seconds.",
                "Holding the Temp button for 3 seconds turns on the Brevlin K3's keep-warm mode."],
         probes=["How long must the Temp button be pressed to activate keep-warm on the Brevlin K3?",
                 "For how many seconds do you hold Temp to start the Brevlin K3's keep-warm mode?",
                 "What is the button hold time for the Brevlin K3 keep-warm feature?"]),
    dict(id="kettle_filter_tab", product="kettle", frequency="frequent",
         answer="teal", aliases=["teal tab"],
         ask=["Which replacement filter fits the Brevlin K3? There are a few on your site and they look the same.",
              "I need a new limescale filter for my Brevlin K3 kettle, how do I tell the right one apart?",
              "Your spare filters all look alike. Which one is for the Brevlin K3?"],
         state=["The limescale filter that fits the Brevlin K3 is the one with the teal tab.",
                "Replacement filters for the K3 kettle have a teal tab, so that's the one to look for.",
                "The Brevlin K3 filter is marked with a teal tab."],
         probes=["What colour is the tab on the Brevlin K3's replacement limescale filter?",
                 "By what tab colour can the Brevlin K3 kettle's filter be identified?",
                 "Which colour marks the limescale filter made for the Brevlin K3?"]),
    dict(id="kettle_warranty", product="kettle", frequency="rare",
         answer="30 months", aliases=["thirty months", "2.5 years", "two and a half years"],
         ask=["How long is the warranty on the Brevlin K3 kettle?",
              "Is my Brevlin K3 still under warranty? I bought it a while back.",
              "What warranty comes with a Brevlin K3?"],
         state=["The Brevlin K3 kettle comes with a warranty of 30 months.",
                "The Brevlin K3 is covered by our warranty for 30 months from purchase.",
                "Every Brevlin K3 carries a warranty of 30 months."],
         probes=["What is the warranty period of the Brevlin K3 kettle?",
                 "For how many months is a Brevlin K3 covered by warranty?",
                 "How long does Marrowick's warranty on the Brevlin K3 last?"]),
    dict(id="purifier_filter_life", product="purifier", frequency="frequent",
         answer="9 months", aliases=["nine months"],
         ask=["How often should I be changing the filter in my Nimbrel P20?",
              "When does the Nimbrel P20 filter need replacing? I don't want to waste money changing it too early.",
              "I'm trying to budget for filters. How long does one last in the Nimbrel P20 air purifier?"],
         state=["The Nimbrel P20's filter should be replaced every 9 months.",
                "A Nimbrel P20 filter lasts 9 months in normal use.",
                "We recommend a new filter in the P20 every 9 months."],
         probes=["What is the replacement interval for the Nimbrel P20 air purifier's filter?",
                 "After how many months does the Nimbrel P20 filter need changing?",
                 "How long is the service life of a Nimbrel P20 filter?"]),
    dict(id="purifier_filter_reset", product="purifier", frequency="frequent",
         answer="Fan button", aliases=[],
         ask=["The filter light on my Nimbrel P20 stays on even after I put a new filter in. How do I clear it?",
              "How do I reset the filter warning on the Nimbrel P20?",
              "I changed the filter on my Nimbrel P20 air purifier, but the reminder light won't go off. "
              "What do I press?"],
         state=["To reset the filter light on the Nimbrel P20, hold the Fan button until the light blinks.",
                "The Nimbrel P20's filter light resets when you hold down the Fan button until it blinks.",
                "Holding the Fan button on the P20 until the light blinks clears the filter reminder.",
                "You clear the filter warning on the Nimbrel P20 by holding down the Fan button."],
         probes=["Which button resets the filter indicator on a Nimbrel P20?",
                 "What button must be held to clear the Nimbrel P20's filter reminder light?",
                 "On the Nimbrel P20 air purifier, which control resets the filter light?"]),
    dict(id="purifier_error_e7", product="purifier", frequency="frequent",
         answer="filter door", aliases=[],
         ask=["My Nimbrel P20 is showing E7 and won't start. What does that mean?",
              "What's error code E7 on the Nimbrel P20 air purifier?",
              "The display on my Nimbrel P20 just says E7. Is it broken?"],
         state=["Error E7 on the Nimbrel P20 means the filter door isn't fully closed.",
                "On the P20, E7 is the code for an open filter door.",
                "The Nimbrel P20 shows E7 when the filter door is not shut properly."],
         probes=["What problem does the E7 code indicate on a Nimbrel P20 air purifier?",
                 "What causes the Nimbrel P20 to display error E7?",
                 "When the Nimbrel P20 reports E7, what is wrong?"]),
    dict(id="purifier_room_size", product="purifier", frequency="frequent",
         answer="40 square metres", aliases=["40 square meters", "40 m2", "40 m²", "40 sq m", "40 sqm"],
         ask=["Is the Nimbrel P20 big enough for my living room? What size room is it rated for?",
              "What size room can the Nimbrel P20 handle?",
              "How large a space will one Nimbrel P20 air purifier cover?"],
         state=["The Nimbrel P20 is rated for rooms up to 40 square metres.",
                "One Nimbrel P20 covers a room of up to 40 square metres.",
                "The P20 cleans the air in spaces as large as 40 square metres."],
         probes=["What is the maximum room area for the Nimbrel P20 air purifier?",
                 "Up to how many square metres does a Nimbrel P20 cover?",
                 "What floor area is the Nimbrel P20 designed to purify?"]),
    dict(id="purifier_ring_moderate", product="purifier", frequency="rare",
         answer="amber", aliases=[],
         ask=["The light ring on my Nimbrel P20 keeps changing colour. Which colour means the air is moderate?",
              "Which ring colour on the Nimbrel P20 means moderate air quality?",
              "What colour should the Nimbrel P20's ring be when the air is so-so?"],
         state=["The Nimbrel P20's light ring glows amber when the air quality is moderate.",
                "Amber on the P20's ring means the air quality is moderate.",
                "When the air is moderate, the ring on the Nimbrel P20 turns amber."],
         probes=["What colour does the Nimbrel P20 light ring turn for moderate air quality?",
                 "Which colour signals moderate air on the Nimbrel P20 purifier?",
                 "In moderate air conditions, what colour is the Nimbrel P20's indicator ring?"]),
    dict(id="toaster_browning_settings", product="toaster", frequency="frequent",
         answer="9 settings", aliases=["nine settings", "9 levels", "9 browning settings", "9 shades"],
         ask=["How many browning settings does the Ferrowen T2 have? My dial's numbers have rubbed off.",
              "How far does the browning dial go on the Ferrowen T2 toaster?",
              "What's the range of the browning control on the Ferrowen T2?"],
         state=["The Ferrowen T2's browning dial has 9 settings.",
                "There are 9 settings on the Ferrowen T2 browning dial.",
                "The T2 toaster offers 9 settings for browning."],
         probes=["How many browning levels are on a Ferrowen T2 toaster?",
                 "What number of browning settings does the Ferrowen T2 offer?",
                 "How many positions does the Ferrowen T2 browning dial have?"]),
    dict(id="toaster_crumb_tray", product="toaster", frequency="frequent",
         answer="left side", aliases=["left-hand side", "left hand side"],
         ask=["Where is the crumb tray on the Ferrowen T2? I can't find it anywhere.",
              "How do I get the crumb tray out of my Ferrowen T2 toaster?",
              "Which side does the Ferrowen T2's crumb tray come out of?"],
         state=["The Ferrowen T2's crumb tray slides out from the left side.",
                "On the T2 toaster, the crumb tray pulls out from the left side.",
                "You'll find the Ferrowen T2 crumb tray on the left side of the base."],
         probes=["On which side of the Ferrowen T2 toaster is the crumb tray removed?",
                 "From what side does the Ferrowen T2 crumb tray slide out?",
                 "Where on the Ferrowen T2 is the crumb tray located?"]),
    dict(id="toaster_limited_colour", product="toaster", frequency="rare",
         answer="Harbour Grey", aliases=["Harbor Grey", "Harbour Gray", "Harbor Gray"],
         ask=["What's the name of the limited-edition colour of the Ferrowen T2?",
              "I saw a special colour of the Ferrowen T2 toaster in a shop. What is it called?",
              "Which limited colour is the Ferrowen T2 sold in?"],
         state=["The limited-edition Ferrowen T2 comes in a colour called Harbour Grey.",
                "The T2's limited-edition colour is Harbour Grey.",
                "Harbour Grey is the name of the limited-edition Ferrowen T2 finish."],
         probes=["Which special-edition finish does Marrowick offer for the Ferrowen T2?",
                 "What finish does the limited Ferrowen T2 toaster come in?",
                 "In what limited colourway was the Ferrowen T2 released?"]),
    dict(id="toaster_defrost_time", product="toaster", frequency="frequent",
         answer="40 seconds", aliases=["forty seconds"],
         ask=["How much extra time does the defrost button add on the Ferrowen T2?",
              "If I use defrost on my Ferrowen T2 toaster, how much longer does it toast for?",
              "Does the Ferrowen T2's defrost setting make the cycle longer, and by how much?"],
         state=["The Ferrowen T2's defrost button adds 40 seconds to the toasting time.",
                "Defrost on the T2 toaster extends the cycle by 40 seconds.",
                "Pressing defrost on the Ferrowen T2 adds an extra 40 seconds."],
         probes=["By how many seconds does defrost lengthen a Ferrowen T2 toasting cycle?",
                 "What is the additional time added by the Ferrowen T2 defrost function?",
                 "How much longer does the Ferrowen T2 toast with defrost selected?"]),
    dict(id="grinder_espresso_setting", product="grinder", frequency="frequent",
         answer="setting 4", aliases=["number 4", "level 4", "setting four", "position 4"],
         ask=["What grind setting should I use for espresso on my Moltrane G5?",
              "My espresso keeps coming out watery. Which setting on the Moltrane G5 is meant for espresso?",
              "Where should the dial on the Moltrane G5 be for espresso?"],
         state=["For espresso, set the Moltrane G5 to setting 4.",
                "The Moltrane G5's espresso grind is setting 4.",
                "Setting 4 on the G5 grinder is the one for espresso."],
         probes=["Which grind setting on the Moltrane G5 is recommended for espresso?",
                 "What Moltrane G5 grinder setting produces an espresso grind?",
                 "For making espresso, what number is the Moltrane G5 dial set to?"]),
    dict(id="grinder_burr_part", product="grinder", frequency="rare",
         answer="MX-415", aliases=["MX415", "MX 415"],
         ask=["What's the part number for replacement burrs on the Moltrane G5?",
              "I need to order new burrs for my Moltrane G5 grinder. Which part do I ask for?",
              "Which burr set fits the Moltrane G5?"],
         state=["The replacement burr set for the Moltrane G5 is part number MX-415.",
                "Burrs for the G5 grinder are ordered as part MX-415.",
                "The Moltrane G5 takes the MX-415 burr set."],
         probes=["Which part code identifies the burrs for a Moltrane G5?",
                 "Under what part number are Moltrane G5 replacement burrs sold?",
                 "What code should be quoted when buying burrs for the Moltrane G5 coffee grinder?"]),
    dict(id="grinder_hopper_capacity", product="grinder", frequency="frequent",
         answer="250 grams", aliases=["250 g", "250g", "250 grammes"],
         ask=["How many beans can I put in the Moltrane G5's hopper at once?",
              "What's the hopper capacity on the Moltrane G5 grinder?",
              "How full can I fill the bean hopper on my Moltrane G5?"],
         state=["The Moltrane G5's bean hopper holds 250 grams.",
                "The G5 hopper takes up to 250 grams of beans.",
                "You can load 250 grams of beans into the Moltrane G5 hopper."],
         probes=["How much coffee fits in the Moltrane G5 bean hopper?",
                 "What weight of beans does the Moltrane G5 hopper hold?",
                 "How many grams of beans can a Moltrane G5 take?"]),
    dict(id="grinder_cleaning_interval", product="grinder", frequency="frequent",
         answer="6 weeks", aliases=["six weeks"],
         ask=["How often should I clean the burrs on my Moltrane G5?",
              "Is there a recommended cleaning schedule for the Moltrane G5 grinder?",
              "How regularly do the Moltrane G5 burrs need a clean?"],
         state=["The Moltrane G5's burrs should be cleaned every 6 weeks.",
                "We recommend cleaning the G5 grinder's burrs every 6 weeks.",
                "Give the Moltrane G5 burrs a clean every 6 weeks."],
         probes=["What is the recommended burr-cleaning interval for the Moltrane G5?",
                 "How many weeks should pass between Moltrane G5 burr cleanings?",
                 "At what interval should a Moltrane G5 grinder be cleaned?"]),
    dict(id="lamp_warmest_temperature", product="lamp", frequency="frequent",
         answer="2700 K", aliases=["2700K", "2700 kelvin", "2,700 K"],
         ask=["How warm does the light on the Lumivane L7 go?",
              "What's the warmest colour temperature on the Lumivane L7 desk lamp?",
              "I like a warm light in the evening. How low does the Lumivane L7 colour temperature go?"],
         state=["The Lumivane L7's warmest setting is 2700 K.",
                "At its warmest, the L7 lamp gives light at 2700 K.",
                "The Lumivane L7 goes down to a warm 2700 K."],
         probes=["What is the lowest kelvin value the Lumivane L7 desk lamp supports?",
                 "In kelvin, how warm is the Lumivane L7 at its warmest setting?",
                 "What colour temperature does the Lumivane L7 reach on its warmest setting?"]),
    dict(id="lamp_auto_off", product="lamp", frequency="frequent",
         answer="2 hours", aliases=["two hours", "120 minutes"],
         ask=["My Lumivane L7 keeps switching itself off. Is there a timer?",
              "How long does the Lumivane L7 stay on before it turns off by itself?",
              "When does the auto-off on the Lumivane L7 desk lamp kick in?"],
         state=["The Lumivane L7's auto-off timer switches the lamp off after 2 hours.",
                "The L7 turns itself off after 2 hours of use.",
                "Auto-off on the Lumivane L7 kicks in after 2 hours."],
         probes=["After how long does the Lumivane L7's auto-off timer switch the lamp off?",
                 "What is the auto-off time of the Lumivane L7 desk lamp?",
                 "How many hours can the Lumivane L7 run before it turns itself off?"]),
    dict(id="lamp_usb_output", product="lamp", frequency="rare",
         answer="18 watts", aliases=["18 W", "18W", "18 watt"],
         ask=["Can the USB-C port on the Lumivane L7 charge my phone quickly? How much power does it give?",
              "How many watts does the USB-C port on the Lumivane L7 put out?",
              "What's the output of the charging port on the Lumivane L7 desk lamp?"],
         state=["The USB-C port on the Lumivane L7 delivers 18 watts.",
                "The L7 lamp's USB-C port charges at up to 18 watts.",
                "The Lumivane L7's charging port provides 18 watts."],
         probes=["What is the power output of the Lumivane L7's USB-C port?",
                 "How much wattage does the Lumivane L7 USB-C charging port supply?",
                 "At what wattage does the Lumivane L7 charge devices?"]),
    dict(id="lamp_app", product="lamp", frequency="frequent",
         answer="Glimmerlane", aliases=["Glimmerlane app"],
         ask=["Which app do I need to control the Lumivane L7 from my phone?",
              "Is there an app for the Lumivane L7 desk lamp? What's it called?",
              "What app does the Lumivane L7 pair with?"],
         state=["The Lumivane L7 pairs with the Glimmerlane app.",
                "You control the L7 lamp from your phone with the Glimmerlane app.",
                "The app for the Lumivane L7 is called Glimmerlane."],
         probes=["What is the name of the smartphone app used with the Lumivane L7?",
                 "Which mobile app controls a Lumivane L7 desk lamp?",
                 "Through what app is the Lumivane L7 lamp operated?"]),
    dict(id="mixer_bowl_capacity", product="mixer", frequency="frequent",
         answer="5.5 litres", aliases=["5.5 liters", "5.5 litre", "5.5 liter", "5.5 l"],
         ask=["How big is the bowl on the Kelderby M9?",
              "What's the bowl capacity of the Kelderby M9 stand mixer?",
              "Will the Kelderby M9 bowl fit a double batch of dough? How much does it hold?"],
         state=["The Kelderby M9's bowl holds 5.5 litres.",
                "The bowl of the M9 stand mixer has a capacity of 5.5 litres.",
                "You get 5.5 litres of space in the Kelderby M9 bowl."],
         probes=["What volume does the Kelderby M9 mixing bowl have?",
                 "How many litres does the Kelderby M9 stand mixer's bowl hold?",
                 "What is the size of the Kelderby M9 bowl in litres?"]),
    dict(id="mixer_speeds", product="mixer", frequency="frequent",
         answer="12 speeds", aliases=["twelve speeds", "12 speed settings", "12 settings"],
         ask=["My Kelderby M9's dial is worn. How many speeds is it supposed to have?",
              "Does the Kelderby M9 have more speeds than the old model? How many are there?",
              "How many speeds are on the Kelderby M9 stand mixer?"],
         state=["The Kelderby M9 has 12 speeds.",
                "There are 12 speeds on the M9 stand mixer.",
                "The Kelderby M9's speed dial offers 12 speeds."],
         probes=["What is the number of mixing speeds on the Kelderby M9?",
                 "How many speed options does the Kelderby M9 provide?",
                 "Across how many speeds can the Kelderby M9 stand mixer run?"]),
    dict(id="mixer_motor_power", product="mixer", frequency="frequent",
         answer="900 watts", aliases=["900 W", "900W", "900 watt"],
         ask=["How powerful is the motor in the Kelderby M9?",
              "What wattage is the Kelderby M9 stand mixer's motor?",
              "Is the Kelderby M9 strong enough for bread dough? What's the motor rated at?"],
         state=["The Kelderby M9's motor is rated at 900 watts.",
                "The M9 stand mixer runs on a motor of 900 watts.",
                "The motor in the Kelderby M9 delivers 900 watts."],
         probes=["What is the power rating of the Kelderby M9 mixer motor?",
                 "How many watts does the Kelderby M9's motor draw?",
                 "What motor power does the Kelderby M9 stand mixer have?"]),
    dict(id="mixer_bowl_release", product="mixer", frequency="frequent",
         answer="anticlockwise", aliases=["anti-clockwise", "counterclockwise", "counter-clockwise"],
         ask=["How do I get the bowl off my Kelderby M9? It seems stuck.",
              "Which way do I twist the Kelderby M9 bowl to remove it?",
              "The bowl on my Kelderby M9 stand mixer won't come off. Which direction does it turn?"],
         state=["To release the Kelderby M9's bowl, turn it anticlockwise.",
                "The M9 bowl unlocks when you twist it anticlockwise.",
                "Turning the bowl anticlockwise releases it from the Kelderby M9's base."],
         probes=["In which direction is the Kelderby M9 bowl turned to unlock it?",
                 "What way must the Kelderby M9 mixing bowl be rotated to detach it?",
                 "Which direction releases the bowl of a Kelderby M9 stand mixer?"]),
    dict(id="returns_window", product="company", frequency="frequent",
         answer="45 days", aliases=["forty-five days"],
         ask=["How long do I have to return something I bought from Marrowick?",
              "What's your returns window? I'm not sure I'll keep my order.",
              "Can I still send back an order I received a few weeks ago? How long is your return period?"],
         state=["Marrowick accepts returns within 45 days of delivery.",
                "You have 45 days from delivery to return anything bought from Marrowick.",
                "Our returns window is 45 days from the day your order arrives."],
         probes=["What is Marrowick's return period for purchases?",
                 "Within how many days of delivery can a Marrowick order be returned?",
                 "How many days does Marrowick allow for returns?"]),
    dict(id="phone_line_closed_day", product="company", frequency="frequent",
         answer="Wednesday", aliases=["Wednesdays"],
         ask=["I tried to ring your support line yesterday and nobody picked up. Which day is it closed?",
              "Is your phone line open every day? Which day should I avoid calling?",
              "What day is your phone support shut? I want to call about my order."],
         state=["Marrowick's phone support line is closed on Wednesdays.",
                "Our phone line is closed every Wednesday, but email support runs all week.",
                "Phone support isn't available on Wednesdays."],
         probes=["On which day of the week is Marrowick's telephone support unavailable?",
                 "What day does Marrowick close its phone support line?",
                 "Which weekday can customers not reach Marrowick by phone?"]),
    dict(id="spare_parts_warehouse", product="company", frequency="rare",
         answer="Pellingford", aliases=[],
         ask=["Where do your spare parts ship from? I'm trying to guess how long delivery will take.",
              "Which warehouse sends out Marrowick spare parts?",
              "My spare part hasn't arrived yet. Where is it coming from?"],
         state=["All Marrowick spare parts ship from our warehouse in Pellingford.",
                "Spare parts are sent out from the Marrowick warehouse in Pellingford.",
                "Our spare parts warehouse is in Pellingford, and everything ships from there."],
         probes=["From which town does Marrowick dispatch its spare parts?",
                 "In what town is the Marrowick spare parts warehouse located?",
                 "Where is Marrowick's spare parts warehouse?"]),
    dict(id="loyalty_programme", product="company", frequency="frequent",
         answer="Hearthwick", aliases=["Hearthwick Rewards"],
         ask=["Do you have a loyalty scheme? What's it called so I can sign up?",
              "What's the name of Marrowick's rewards programme?",
              "A friend said you have a points club for regular customers. What is it called?"],
         state=["Marrowick's loyalty programme is called Hearthwick Rewards.",
                "Our rewards scheme is Hearthwick Rewards, and you can join from your account page.",
                "The Marrowick loyalty scheme goes by the name Hearthwick Rewards."],
         probes=["What is Marrowick's customer loyalty programme named?",
                 "Which rewards programme does Marrowick run for regular customers?",
                 "What is the name of the points scheme Marrowick offers?"]),
]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
AGENTS = ["Priya", "Tomasz", "Jordan", "Elin", "Marcus", "Aiko", "Rafa", "Nell"]

# ---------------------------------------------------------------------------------------------------
# customers


def _phone(rng: Random, locale: str) -> str:
    """A number from a range reserved for fiction, written the local way."""
    if locale in ("en_US", "en_CA"):  # NANP: 555-0100 .. 555-0199 are fictional in every area code
        area = rng.choice([n for n in range(201, 990) if n % 100 != 11 and n // 10 % 10 != 9])
        line = f"555-01{rng.randrange(100):02d}"
        return rng.choice([f"({area}) {line}", f"{area}-{line}", f"{area}.{line.replace('-', '.')}"])
    if locale == "en_GB":  # Ofcom drama numbers
        tail = f"{rng.randrange(1000):03d}"
        return rng.choice([f"07700 900{tail}", f"020 7946 0{tail}", f"0161 496 0{tail}",
                           f"0113 496 0{tail}", f"0117 496 0{tail}", f"0121 496 0{tail}"])
    # en_AU: ACMA numbers for dramatic use
    tail = f"{rng.randrange(10000):04d}"
    return rng.choice([f"(02) 5550 {tail}", f"(03) 7010 {tail}", f"(07) 5550 {tail}", f"(08) 7010 {tail}"])


def _email(rng: Random, fk: Faker, first: str, last: str) -> str:
    f, l = (re.sub(r"[^a-z]", "", s.lower()) for s in (first, last))
    user = rng.choice([f"{f}.{l}", f"{f}{l[:1]}", f"{f[:1]}.{l}", f"{f}_{l}{rng.randint(1, 99)}",
                       f"{l}.{f}", f"{f}{rng.randint(70, 99)}"])
    return f"{user}@{fk.safe_domain_name()}"


def _address(fk: Faker, locale: str) -> str:
    street = fk.street_address().replace("\n", ", ")
    if locale == "en_US":
        state = fk.state_abbr(include_territories=False, include_freely_associated_states=False)
        return f"{street}, {fk.city()}, {state} {fk.postcode()}"
    if locale == "en_CA":
        return f"{street}, {fk.city()}, {fk.province_abbr()} {fk.postcode()}"
    if locale == "en_AU":
        return f"{street}, {fk.city()} {fk.state_abbr()} {fk.postcode()}"
    return f"{street}, {fk.city()} {fk.postcode()}"


class Customers:
    """Unique invented customers: no name, email, phone or order number is used twice."""

    def __init__(self, rng: Random, seed: int):
        self.rng = rng
        self.fakers = {}
        for i, loc in enumerate(LOCALES):
            fk = Faker(loc)
            fk.seed_instance(seed * 1000 + i)  # a stream per locale (one shared seed makes en_US/CA/AU twins)
            self.fakers[loc] = fk
        self.seen: set[str] = set()

    def _fresh(self, make) -> str:
        for _ in range(1000):
            v = make()
            if v.lower() not in self.seen:
                self.seen.add(v.lower())
                return v
        raise RuntimeError("could not make a unique customer detail")

    def new(self) -> dict:
        rng = self.rng
        loc = rng.choice(LOCALES)
        fk = self.fakers[loc]
        first, last = fk.first_name(), fk.last_name()
        while f"{first} {last}".lower() in self.seen:
            first, last = fk.first_name(), fk.last_name()
        self.seen.add(f"{first} {last}".lower())
        return {
            "locale": loc, "first": first, "last": last, "full": f"{first} {last}",
            "email": self._fresh(lambda: _email(rng, fk, first, last)),
            "phone": self._fresh(lambda: _phone(rng, loc)),
            "order": self._fresh(lambda: f"MW-{rng.randint(100000, 999999)}"),
            "address": _address(fk, loc) if rng.random() < 0.35 else None,
            "card4": f"{rng.randrange(10000):04d}" if rng.random() < 0.3 else None,
        }


# ---------------------------------------------------------------------------------------------------
# tickets


def _when(rng: Random) -> str:
    return rng.choice(["last week", "a couple of weeks ago", "last month", "a few days ago",
                       f"in {rng.choice(MONTHS)}", f"on {rng.randint(1, 28)} {rng.choice(MONTHS)}"])


def _context(rng: Random, fact: dict) -> str:
    name, short = PRODUCTS[fact["product"]]
    if name is None:
        return rng.choice(["I've ordered from you a few times.", f"I placed an order with you {_when(rng)}.",
                           "I'm a fairly new customer.", f"My last order arrived {_when(rng)}."])
    return rng.choice([f"I bought a {name} {_when(rng)}.", f"My {name} arrived {_when(rng)}.",
                       f"I've had my {name} since {rng.choice(MONTHS)}.",
                       f"We were given a {name} as a present {_when(rng)}.",
                       f"I ordered the {short} from your website {_when(rng)}."])


def _extras(rng: Random, c: dict) -> list[str]:
    out = []
    if c["address"]:
        out.append(rng.choice([f"Delivery address is {c['address']}.", f"I live at {c['address']}.",
                               f"It was delivered to {c['address']}."]))
    if c["card4"]:
        out.append(rng.choice([f"I paid with my card ending in {c['card4']}.",
                               f"Paid by card, last four digits {c['card4']}.",
                               f"The payment went on my card ending {c['card4']}."]))
    return out


def user_message(rng: Random, fact: dict, c: dict) -> str:
    q = rng.choice(fact["ask"])
    ctx = _context(rng, fact)
    ex = " ".join(_extras(rng, c))
    o, full, first, email, phone = f"#{c['order']}", c["full"], c["first"], c["email"], c["phone"]
    sign = rng.choice([f"Thanks, {first}", f"Cheers, {first}", f"Regards, {full}", "Thanks in advance!",
                       f"Many thanks, {first}", ""])
    forms = [
        f"Hi, this is {full} ({email}, {phone}), order {o}. {ctx} {ex} {q} {sign}",
        f"Hello! {q} {ctx} {ex} My details: {full}, order {o}, phone {phone}, email {email}.",
        f"Hi {COMPANY}, {full} here. {ctx} (order {o}) {ex} {q} You can reach me on {phone} or at {email}.",
        f"Dear support team, my name is {full} and my order number is {o}. {ctx} {ex} {q} "
        f"Please reply to {email} or call {phone}. {sign}",
        f"{q} {ctx} {ex} Order {o}, {full}, {phone}, {email}.",
        f"Good morning. {ctx} {ex} {q} I'm {full}, order {o}. Best number is {phone}, email {email}. {sign}",
    ]
    text = rng.choice(forms)
    return re.sub(r"\s+", " ", text).strip()


def assistant_message(rng: Random, fact: dict, c: dict) -> str:
    first, o = c["first"], f"#{c['order']}"
    _, short = PRODUCTS[fact["product"]]
    greet = rng.choice([f"Hi {first},", f"Hello {first},", f"Dear {first},", f"Hi {first}, thanks for reaching out.",
                        f"Thanks for your message, {first}.", f"Hi {first}, thanks for getting in touch."])
    ack = rng.choice(["", "", "Happy to help with that.", "Good question!", "Thanks for your patience.",
                      "Sorry for the slow reply."])
    note = rng.choice([f"I've added a note to order {o}.", f"I've logged this on order {o} for you.",
                       f"Order {o} is noted on our side."]) if rng.random() < 0.3 else ""
    closes = ["Let us know if there's anything else.", "Have a great day!", "Anything else, just reply to this email.",
              "Hope that helps!", "Take care."]
    if short:
        closes.append(f"Enjoy your {short}!")
    close = rng.choice(closes)
    agent = rng.choice(AGENTS)
    sign = rng.choice([f"Best, {agent}", f"Kind regards, {agent} at {COMPANY} Support",
                       f"{agent}, {COMPANY} Support", f"Warm wishes, {agent}"])
    body = " ".join(p for p in [ack, rng.choice(fact["state"]), note, close] if p)
    return f"{greet}\n\n{body}\n\n{sign}"


def words(record: dict) -> int:
    return sum(len(m["content"].split()) for m in record["messages"])


def ticket(rng: Random, fact: dict, c: dict) -> dict:
    for _ in range(50):  # redraw the wording until it fits MAX_WORDS
        rec = {"messages": [{"role": "user", "content": user_message(rng, fact, c)},
                            {"role": "assistant", "content": assistant_message(rng, fact, c)}]}
        if words(rec) <= MAX_WORDS:
            return rec
    raise RuntimeError(f"could not fit a ticket about {fact['id']} in {MAX_WORDS} words")


# ---------------------------------------------------------------------------------------------------
# counts, checks, output


def ticket_counts(rng: Random, n_tickets: int) -> dict[str, int]:
    """Rare facts get 2-3 tickets each; the rest fills the frequent facts, 20-40 each, unevenly."""
    rare = [f["id"] for f in FACTS if f["frequency"] == "rare"]
    freq = [f["id"] for f in FACTS if f["frequency"] == "frequent"]
    counts = {fid: rng.randint(*RARE_RANGE) for fid in rare}
    left = n_tickets - sum(counts.values())
    lo, hi = FREQUENT_RANGE
    if not len(freq) * lo <= left <= len(freq) * hi:
        raise SystemExit(f"--tickets {n_tickets} cannot give {len(freq)} frequent facts {lo}-{hi} tickets each "
                         f"(plus {sum(counts.values())} rare tickets); use "
                         f"{len(freq) * lo + sum(counts.values())}..{len(freq) * hi + sum(counts.values())}")
    weight = {fid: rng.uniform(0.4, 1.6) for fid in freq}
    fc = {fid: lo for fid in freq}
    for _ in range(left - len(freq) * lo):
        open_ = [fid for fid in freq if fc[fid] < hi]
        fid = rng.choices(open_, weights=[weight[x] for x in open_])[0]
        fc[fid] += 1
    return {f["id"]: (counts.get(f["id"]) or fc[f["id"]]) for f in FACTS}


def norm(s: str) -> str:
    return " " + " ".join(re.sub(r"[^0-9a-z²]+", " ", s.lower()).split()) + " "


def has_answer(fact: dict, text: str) -> bool:
    t = norm(text)
    return any(norm(a) in t for a in [fact["answer"], *fact["aliases"]])


def check_facts() -> None:
    """The fact table is sound: ids and answers unique, every statement gives its own answer and no other
    fact's, no probe gives its answer away or repeats a ticket question."""
    ids = [f["id"] for f in FACTS]
    assert len(ids) == len(set(ids)), "duplicate fact id"
    answers = [norm(f["answer"]) for f in FACTS]
    assert len(answers) == len(set(answers)), "two facts share an answer"
    for f in FACTS:
        assert len(f["probes"]) == 3, f["id"]
        for s in f["state"]:
            assert has_answer(f, s), f"{f['id']}: statement lacks the answer: {s}"
            for g in FACTS:
                if g is not f:
                    assert not has_answer(g, s), f"{f['id']}: statement gives {g['id']}'s answer: {s}"
        for p in f["probes"]:
            assert not has_answer(f, p), f"{f['id']}: probe gives its answer away: {p}"
            assert norm(p) not in {norm(a) for a in f["ask"]}, f"{f['id']}: probe repeats a ticket question: {p}"


def make_records(rng: Random, plan: list[dict], people) -> list[dict]:
    """One ticket per planned fact, each by a new customer."""
    records = []
    for f in plan:
        while True:  # a Faker town or street can carry a fact's answer ("St. Amber"): redraw the customer
            rec = ticket(rng, f, people.new())
            text = " ".join(m["content"] for m in rec["messages"])
            others = any(has_answer(g, text) for g in FACTS if g is not f)
            if not others and not has_answer(f, rec["messages"][0]["content"]):
                break
        records.append(rec)
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tickets", type=int, default=800)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--unseen", type=int, default=200,
                    help="Also write unseen_tickets.jsonl: this many tickets by other customers (another seed), never "
                         "trained on: the non-members of the membership-inference audit.")
    args = ap.parse_args(argv)

    check_facts()
    rng = Random(args.seed)
    counts = ticket_counts(rng, args.tickets)
    plan = [f for f in FACTS for _ in range(counts[f["id"]])]
    rng.shuffle(plan)
    people = Customers(rng, args.seed)
    records = make_records(rng, plan, people)

    # checks on what was made
    stated = Counter()
    for rec, f in zip(records, plan):
        assert has_answer(f, rec["messages"][1]["content"]), f"a ticket about {f['id']} lacks its answer"
        assert not any(has_answer(g, " ".join(m["content"] for m in rec["messages"])) for g in FACTS if g is not f)
        assert not has_answer(f, rec["messages"][0]["content"]), "a customer's message gives the answer away"
        stated[f["id"]] += 1
    assert stated == Counter(counts)
    haystack = [norm(m["content"]) for r in records for m in r["messages"]]
    for f in FACTS:
        for p in f["probes"]:
            assert not any(norm(p) in h for h in haystack), f"probe found verbatim in a ticket: {p}"

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tickets.jsonl", "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    if args.unseen:
        other = Random(args.seed + 1000)
        unseen = make_records(other, [other.choice(FACTS) for _ in range(args.unseen)], Customers(other, args.seed + 1000))
        with open(out / "unseen_tickets.jsonl", "w", encoding="utf-8") as fh:
            for r in unseen:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out / "probes.jsonl", "w", encoding="utf-8") as fh:
        for f in FACTS:
            for p in f["probes"]:
                fh.write(json.dumps({"question": p, "answer": f["answer"], "aliases": f["aliases"],
                                     "fact_id": f["id"], "metadata": {"frequency": f["frequency"]}}, ensure_ascii=False) + "\n")
    facts_out = {
        "company": COMPANY, "seed": args.seed, "tickets": len(records),
        "products": {k: v[0] for k, v in PRODUCTS.items() if v[0]},
        "facts": [{"id": f["id"], "product": PRODUCTS[f["product"]][0] or f"{COMPANY} (company policy)",
                   "answer": f["answer"], "aliases": f["aliases"], "frequency": f["frequency"],
                   "tickets": counts[f["id"]], "statements": f["state"], "ticket_questions": f["ask"],
                   "probes": f["probes"]} for f in FACTS],
    }
    (out / "facts.json").write_text(json.dumps(facts_out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    for kind in ("frequent", "rare"):
        n = [counts[f["id"]] for f in FACTS if f["frequency"] == kind]
        print(f"{kind}: {len(n)} facts, tickets per fact min {min(n)} median {statistics.median(n):g} max {max(n)}")
    w = [words(r) for r in records]
    print(f"{len(records)} tickets (words per record max {max(w)}, median {statistics.median(w):g}), "
          f"{len(FACTS)} facts, {3 * len(FACTS)} probes -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
