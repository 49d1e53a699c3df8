"""Fixed English sentences for sentence-embedding checks and benchmarks.

``SENTENCES``: 40 short sentences on varied topics (weather, cooking, sport,
science, travel, work, health, music, money, animals, technology, history...).
``PARAPHRASE_TRIPLES``: (sentence, paraphrase of it, unrelated sentence); a sound
sentence encoder scores the paraphrase above the unrelated one.
"""

from __future__ import annotations

SENTENCES: list[str] = [
    "It rained all afternoon, so the picnic was moved indoors.",
    "A cold front will bring snow to the mountains tonight.",
    "She baked a loaf of sourdough bread this morning.",
    "Add the garlic once the onions turn golden.",
    "The home team scored twice in the final ten minutes.",
    "He runs five kilometres before breakfast every day.",
    "Water boils at a lower temperature at high altitude.",
    "The telescope captured images of a distant galaxy.",
    "Our flight to Lisbon was delayed by three hours.",
    "The old town is best explored on foot.",
    "The meeting has been moved to Thursday at ten.",
    "Please send me the quarterly report by Friday.",
    "Drinking enough water helps you stay focused.",
    "The doctor recommended more sleep and less coffee.",
    "The orchestra played a symphony by Brahms.",
    "He is learning to play the guitar from online videos.",
    "Interest rates rose for the third time this year.",
    "She saved a little money from every paycheck.",
    "The cat slept in a patch of sunlight on the floor.",
    "Wolves hunt in packs across the northern forests.",
    "The new phone has a faster chip and a brighter screen.",
    "Restart the router if the connection keeps dropping.",
    "The castle was built in the twelfth century.",
    "The treaty ended a war that had lasted a decade.",
    "Children were playing football in the park.",
    "The library closes early on public holidays.",
    "A strong earthquake shook the coastal city at dawn.",
    "The museum opened a new exhibition of modern art.",
    "Tomatoes grow best in warm and sunny gardens.",
    "The train from Paris arrives at platform four.",
    "He forgot his umbrella and got soaked on the way home.",
    "The recipe calls for two cups of flour and one egg.",
    "Electric cars are becoming cheaper to buy and run.",
    "The students presented their science project to the class.",
    "The bakery on the corner sells fresh croissants.",
    "The river flooded the fields after the storm.",
    "She wrote a letter to her grandmother in Canada.",
    "The software update fixed a serious security bug.",
    "Bees play a vital role in pollinating crops.",
    "The marathon starts early to avoid the midday heat.",
]

PARAPHRASE_TRIPLES: list[tuple[str, str, str]] = [
    (
        "The cat is sleeping on the sofa.",
        "A cat is napping on the couch.",
        "Stock markets fell sharply on Monday.",
    ),
    (
        "How do I reset my password?",
        "What are the steps to change my forgotten password?",
        "The recipe needs two eggs and some butter.",
    ),
    (
        "The train was late because of the snow.",
        "Snowfall delayed the train.",
        "She plays the violin in an orchestra.",
    ),
    (
        "He bought a new laptop for work.",
        "He purchased a new computer for his job.",
        "The river flows into the sea near the city.",
    ),
    (
        "Eating vegetables is good for your health.",
        "Vegetables are healthy to eat.",
        "The football match ended in a draw.",
    ),
]
