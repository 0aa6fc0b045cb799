package demo

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
)

// The demo feeds: invented but plausible data, so that the demo pages move
// the moment the server starts. Each loops until ctx ends.

type stock struct {
	Symbol string  `json:"symbol"`
	Name   string  `json:"name"`
	Price  float64 `json:"price"`
	Open   float64 `json:"open"`
	Change float64 `json:"change"`
	Pct    float64 `json:"pct"`
	Volume int     `json:"volume"`
}

// stocks random-walks eight tickers, a few of them every quarter step,
// and NVDA, the hot one, ten times a step: faster than the board's
// max_rate, so that its card shows the newest price at each tick and
// counts the ticks it skipped.
func (d *Feeds) stocks(ctx context.Context) {
	board := []*stock{
		{Symbol: "AAPL", Name: "Apple", Price: 189.50}, {Symbol: "MSFT", Name: "Microsoft", Price: 415.20},
		{Symbol: "GOOG", Name: "Alphabet", Price: 172.30}, {Symbol: "AMZN", Name: "Amazon", Price: 181.60},
		{Symbol: "NVDA", Name: "NVIDIA", Price: 121.40}, {Symbol: "TSLA", Name: "Tesla", Price: 248.90},
		{Symbol: "META", Name: "Meta", Price: 502.10}, {Symbol: "NFLX", Name: "Netflix", Price: 688.00},
	}
	tick := func(s *stock, sigma float64) {
		// A small drift back to the open keeps prices from wandering off.
		drift := (s.Open - s.Price) / s.Open * 0.01
		s.Price = round2(s.Price * (1 + drift + rand.NormFloat64()*sigma))
		s.Change = round2(s.Price - s.Open)
		s.Pct = round2(s.Change / s.Open * 100)
		s.Volume += 100 * (1 + rand.IntN(50))
		d.publish(ctx, "stocks:"+s.Symbol, s)
	}
	for _, s := range board {
		s.Open = s.Price
		tick(s, 0.002) // every ticker has a snapshot from the start
	}
	hot := board[4] // NVDA
	for i := 0; d.wait(ctx, 0.1); i++ {
		tick(hot, 0.0008)
		if i%2 == 0 {
			for range 1 + rand.IntN(2) {
				tick(board[rand.IntN(len(board))], 0.0015)
			}
		}
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// matchEvent is one message of sports:cup-final. Every event carries the
// whole scoreboard, so the latest one (the snapshot) is enough to draw it.
type matchEvent struct {
	Kind   string         `json:"kind"` // kickoff, tick, goal, yellow, red, corner, chance, sub, halftime, fulltime
	Minute int            `json:"minute"`
	Team   string         `json:"team,omitempty"` // home or away
	Player string         `json:"player,omitempty"`
	Text   string         `json:"text,omitempty"`
	Status string         `json:"status"` // "1st half", "half time", "2nd half", "full time"
	Home   string         `json:"home"`
	Away   string         `json:"away"`
	Score  map[string]int `json:"score"`
}

var (
	clubs   = []string{"Harbour City", "Northbridge Rovers", "Eastvale United", "Kingsport Athletic", "Redmoor Town", "Lakeside FC"}
	players = []string{"Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Kowalski", "Byrne", "Haddad", "Novak", "Ferreira", "Jensen", "Adeyemi"}
)

// sports plays matches: one match minute per step, a break at half time
// and a new match a while after the final whistle.
func (d *Feeds) sports(ctx context.Context) {
	const channel = "sports:cup-final"
	for ctx.Err() == nil {
		i := rand.IntN(len(clubs))
		j := (i + 1 + rand.IntN(len(clubs)-1)) % len(clubs)
		m := matchEvent{Home: clubs[i], Away: clubs[j], Score: map[string]int{"home": 0, "away": 0}}
		emit := func(kind, team, text string) {
			e := m
			e.Kind, e.Team, e.Text = kind, team, text
			if team != "" {
				e.Player = players[rand.IntN(len(players))]
				e.Text = fmt.Sprintf(text, e.Player, d.club(&m, team))
			}
			e.Score = map[string]int{"home": m.Score["home"], "away": m.Score["away"]}
			d.publish(ctx, channel, e)
		}
		m.Status = "1st half"
		emit("kickoff", "", fmt.Sprintf("Kick-off: %s v %s", m.Home, m.Away))
		for m.Minute = 1; m.Minute <= 90 && d.wait(ctx, 1); m.Minute++ {
			if m.Minute == 46 {
				m.Status = "2nd half"
				emit("kickoff", "", "The second half is under way")
			}
			d.playMinute(&m, emit)
			if m.Minute == 45 {
				m.Status = "half time"
				emit("halftime", "", fmt.Sprintf("Half time: %s %d-%d %s", m.Home, m.Score["home"], m.Score["away"], m.Away))
				d.wait(ctx, 5)
			}
		}
		m.Minute = 90
		m.Status = "full time"
		emit("fulltime", "", fmt.Sprintf("Full time: %s %d-%d %s", m.Home, m.Score["home"], m.Score["away"], m.Away))
		d.wait(ctx, 15)
	}
}

func (d *Feeds) club(m *matchEvent, team string) string {
	if team == "home" {
		return m.Home
	}
	return m.Away
}

// playMinute draws what happens in one minute: about 2.7 goals, 4 cards
// and 10 corners a match, like real football.
func (d *Feeds) playMinute(m *matchEvent, emit func(kind, team, text string)) {
	team := "home"
	if rand.IntN(2) == 0 {
		team = "away"
	}
	switch r := rand.Float64(); {
	case r < 0.03:
		m.Score[team]++
		emit("goal", team, "GOAL! %s scores for %s")
	case r < 0.075:
		emit("yellow", team, "Yellow card: %s (%s)")
	case r < 0.078:
		emit("red", team, "Red card! %s (%s) is sent off")
	case r < 0.19:
		emit("corner", team, "Corner to %[2]s, taken by %[1]s")
	case r < 0.30:
		emit("chance", team, "Chance! %s (%s) shoots just wide")
	case r < 0.33 && m.Minute > 55:
		emit("sub", team, "Substitution for %[2]s: %[1]s comes on")
	default:
		emit("tick", "", "")
	}
}

var (
	danmakuLines = []string{
		"666", "哈哈哈哈", "前方高能!", "this part again 😂", "what a shot!!", "first time here, hi all",
		"replay pls", "who's watching in 2025?", "wwwww", "LOL", "goosebumps", "名场面", "that camera angle",
		"8888888", "clip this", "no way", "the music 🔥", "awsl", "respect", "again again again",
	}
	danmakuColors = []string{"#ffffff", "#ffffff", "#ffffff", "#fe0302", "#ffe133", "#00cd00", "#4266be", "#ff7204"}
	chatBots      = []string{"Ada", "Linus", "Grace", "Ken"}
	chatLines     = []string{
		"morning all ☕", "did anyone see the match last night?", "the ticker page is mesmerising",
		"deploying on a Friday, wish me luck", "lunch?", "how is the new build looking?",
		"just pushed the fix", "can someone review my PR?", "brb, meeting", "that was quick",
		"latency is under 10 ms here", "who broke the coffee machine", "+1", "nice!", "back",
	}
)

// danmaku lets bots fire a bullet comment every second or two, and now
// and then (a highlight: "前方高能!") a flood of 60 in three steps, denser
// than the stage's max_rate: the page shows how many a second it skipped.
func (d *Feeds) danmaku(ctx context.Context) {
	say := func() {
		d.publish(ctx, "danmaku:demo", map[string]any{
			"text":  danmakuLines[rand.IntN(len(danmakuLines))],
			"color": danmakuColors[rand.IntN(len(danmakuColors))],
			"user":  "bot",
		})
	}
	for i := 1; d.wait(ctx, 0.6+1.6*rand.Float64()); i++ {
		say()
		if i%15 == 3 { // the first soon after the start
			for j := 0; j < 60 && d.wait(ctx, 0.05); j++ {
				say()
			}
		}
	}
}

// chat has a few bots chatting in the lobby now and then.
func (d *Feeds) chat(ctx context.Context) {
	say := func(text string) {
		d.publish(ctx, "chat:lobby", map[string]any{"name": chatBots[rand.IntN(len(chatBots))], "text": text, "bot": true})
	}
	say("welcome to the Herald demo lobby 👋")
	for d.wait(ctx, 4+8*rand.Float64()) {
		say(chatLines[rand.IntN(len(chatLines))])
	}
}
