// ExampleVocabulary: the hand-written word lists and sentence templates of the example world.
import Foundation

/// One kind of fact a person has (`color` of an object, `city`, `sport`, …): the question asked
/// about it, the sentences that state it (gold passages) and the sentences that only talk about it
/// (lexical decoys).
///
/// Every word is a single piece in both demo vocabularies (T5's SentencePiece, cased; MiniLM's
/// uncased WordPiece) except `a` and punctuation, which T5 splits off; `ExampleWorldTests` checks it
/// with the real tokenizers. `{N}` is the person, `{O}` the object (color facts only), `{V}` the
/// value (the answer).
struct ExampleRelation: Sendable {
    /// Short name, also in question ids' metadata.
    let name: String
    /// Objects the fact is about (`cat`, `car`…), or `[""]` for facts about the person alone.
    let objects: [String]
    /// The answers this relation draws from; disjoint from every other relation's values.
    let values: [String]
    /// Question templates; each uses the relation's key words, which the decoys repeat.
    let questions: [String]
    /// Sentences stating the value. They share the person, the object and the question's verb
    /// (`play`, `live`, `like`, `have`) but not its noun (`sport`, `city`, …), so word overlap ranks
    /// the decoys above them and them above other people's passages; what marks them is a value
    /// of the right class next to the person, a pattern a learned retriever can pick up.
    let gold: [String]
    /// Sentences that repeat the question's words (the person, the noun, mostly the verb) but
    /// hold no value.
    let decoys: [String]
}

enum ExampleVocabulary {
    /// People: capitalised for T5's cased vocabulary (MiniLM lowercases them); no name is also a
    /// common word or a value.
    static let names: [String] = [
        "Anna", "Ben", "Carl", "Emma", "Fred", "Jack", "Kate", "Paul", "Rosa", "Sam", "Tom", "Walt",
        "Alex", "Amy", "Bob", "Dan", "Eva", "Ian", "Jane", "Joe", "Kim", "Lucy", "Max", "Pete",
        "Ruth", "Sara", "Ted", "Adam", "Alan", "Luke", "Owen", "Rick", "Sue", "Vince", "Wade", "Mary",
        "John", "Peter", "Susan", "Linda", "David", "Lisa", "Karen", "Nancy", "Helen", "Sandra", "Donna",
        "Carol", "Sharon", "Laura", "Sarah", "Kevin", "Jason", "Eric", "Brian", "Gary", "Larry", "Scott",
        "Frank", "Steve", "Roger", "Henry", "Arthur", "Ryan", "Carlos", "Juan", "Diego", "Maria", "Julia",
        "Sophie", "Anne", "Oscar", "Hans", "Felix", "Victor", "Bruno", "Simon", "Martin", "Nick", "Chris",
        "Tony", "Greg", "Jeff", "Matt", "Andy", "Jim", "Ron", "Ken", "Earl", "Dean", "Glen", "Neil",
        "Kyle", "Troy", "Brad", "Todd", "Ross", "Noah", "Mason", "Lucas", "Oliver", "Emily", "Olivia",
        "Alice", "Diana", "Elena", "Hannah", "Judy", "Kelly", "Lauren", "Rachel", "Tracy", "Wendy",
        "Jenny", "Ali", "Raj", "Chen", "Pablo", "Marco", "Pierre", "Louis", "Karl", "Klaus", "Lars", "Erik",
    ]

    static let relations: [ExampleRelation] = [
        ExampleRelation(
            name: "color",
            objects: ["cat", "dog", "car", "bike", "boat", "house", "coat", "bag", "cup", "chair"],
            values: ["red", "blue", "green", "black", "white", "pink", "gray", "brown", "gold", "silver",
                     "orange", "purple", "yellow", "cream", "olive", "navy"],
            questions: ["what color is the {O} of {N} ?", "which color is the {O} of {N} ?"],
            gold: ["{N} has a {V} {O} .", "the {O} that {N} bought last year is {V} .", "{N} keeps a {V} {O} at home ."],
            decoys: ["{N} asked what color the {O} should be .", "the color of the {O} of {N} is not known .",
                     "{N} could not choose a color for the {O} .", "which color the {O} of {N} will have is still open .",
                     "{N} wanted to know what color a new {O} should be .", "no one told {N} the color of the {O} ."]),
        ExampleRelation(
            name: "city", objects: [""],
            values: ["Paris", "Rome", "Tokyo", "London", "Berlin", "Madrid", "Cairo", "Oslo", "Dublin", "Vienna",
                     "Prague", "Moscow", "Sydney", "Boston", "Denver", "Chicago", "Houston", "Dallas", "Miami",
                     "Seattle", "Toronto", "Delhi", "Lisbon", "Munich"],
            questions: ["in which city does {N} live ?", "which city does {N} live in ?"],
            gold: ["{N} chose to live in {V} long ago .", "{N} was born in {V} and still wants to live there .",
                   "to live in {V} was always the plan of {N} ."],
            decoys: ["{N} does not live in a big city .", "which city {N} will live in is still open .",
                     "{N} asked friends in which city to live .", "{N} would like to live in a new city .",
                     "the city where {N} will live next is not known .", "{N} asked which city is the best to live in ."]),
        ExampleRelation(
            name: "sport", objects: [""],
            values: ["golf", "tennis", "soccer", "hockey", "rugby", "cricket", "baseball", "football",
                     "basketball", "volleyball", "swimming", "cycling", "skiing", "surfing", "sailing", "climbing"],
            questions: ["which sport does {N} play ?", "what sport does {N} play ?"],
            gold: ["{N} can play {V} very well .", "{N} won a prize in {V} and will play again .",
                   "to play {V} with friends is what {N} loves most ."],
            decoys: ["{N} does not play any sport well .", "{N} asked which sport to play next .",
                     "every sport {N} tried to play was hard .", "what sport {N} should play is not known .",
                     "{N} wanted to play a new sport this year .", "no one knows which sport {N} would play ."]),
        ExampleRelation(
            name: "food", objects: [""],
            values: ["pizza", "pasta", "rice", "soup", "bread", "cake", "fish", "salad", "cheese", "honey",
                     "apples", "eggs", "beans", "steak", "candy", "cookies", "chicken", "beef", "chocolate"],
            questions: ["what food does {N} like ?", "which food does {N} like ?"],
            gold: ["{N} would like {V} for every meal .", "{N} cooked {V} for dinner again , as the kids like it .",
                   "for lunch {N} would always like {V} ."],
            decoys: ["{N} does not like the food at school .", "what food {N} would like is a secret .",
                     "{N} asked what food the guests like .", "{N} could not say which food to like .",
                     "no one knows what food {N} would like .", "{N} wanted to try new food at the market ."]),
        ExampleRelation(
            name: "job", objects: [""],
            values: ["nurse", "pilot", "judge", "farmer", "doctor", "lawyer", "teacher", "singer", "writer", "chef",
                     "soldier", "driver", "cook", "poet", "clerk", "guard", "priest", "dentist", "tailor", "coach"],
            questions: ["what job does {N} have ?", "which job does {N} have ?"],
            gold: ["{N} is glad to have work as a {V} in town .", "{N} was proud to have become a {V} .",
                   "to have trained for years as a {V} made {N} happy ."],
            decoys: ["{N} is looking for a new job .", "the job of {N} is a mystery to all .",
                     "{N} lost the old job in spring .", "what job {N} will have is not known .",
                     "{N} would like to have a better job .", "no one knows which job {N} will have ."]),
        ExampleRelation(
            name: "instrument", objects: [""],
            values: ["piano", "guitar", "violin", "flute", "trumpet", "organ", "drum", "harp", "cello"],
            questions: ["which instrument does {N} play ?", "what instrument does {N} play ?"],
            gold: ["{N} can play the {V} in a band .", "{N} got a new {V} as a gift and will play it .",
                   "to play the {V} for hours is what {N} loves ."],
            decoys: ["{N} wants to play an instrument one day .", "which instrument {N} should play is not clear .",
                     "{N} never learned to play an instrument .", "{N} asked what instrument to play .",
                     "no one knows which instrument {N} would play .", "{N} wanted to play a new instrument ."]),
    ]

    /// `template` with `{N}`, `{O}` and `{V}` filled in.
    static func fill(_ template: String, name: String, object: String, value: String = "") -> String {
        template.replacingOccurrences(of: "{N}", with: name)
            .replacingOccurrences(of: "{O}", with: object)
            .replacingOccurrences(of: "{V}", with: value)
    }
}
