import { pageHeading } from './ui.js';
export default { title: 'events', render(root) { root.append(pageHeading('events')); } };
